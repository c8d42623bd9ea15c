"""nst_jax: neural style transfer (Gatys et al.) in JAX."""
