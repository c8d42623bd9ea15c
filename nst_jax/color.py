"""Colour control for style transfer (Gatys et al. 2017, "Controlling
Perceptual Factors in Neural Style Transfer", section 5).

Two ways to keep the content image's colours:

* Luminance-only transfer (section 5.1): transfer style on the luminance
  channel alone (`luminance_only` gives the grey images to optimise with, the
  style's luminance matched to the content's mean and spread), then put the
  result's luminance under the content's colour (`recombine_luminance`).
* Colour matching before transfer (section 5.2): recolour the style image so
  its pixels' mean and covariance are the content's (`match_color_histogram`),
  then transfer as usual.

Everything takes and returns RGB float32[H, W, 3] in [0, 1] (the format of
`image.load_image`) unless stated; functions are pure and jit-friendly (the
`mode` strings are static). The colour space is YIQ (NTSC 1953): Y is the
luminance, I and Q the chroma.
"""

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.losses import formulas

# RGB -> YIQ (FCC NTSC). Row 0 sums to 1, so Y of an image in [0, 1] is in
# [0, 1]; rows 1 and 2 sum to 0, so grey pixels have I = Q = 0.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.595716, -0.274453, -0.321263],
                        [0.211456, -0.522591, 0.311135]])
# The exact inverse (computed in float64), so the round trip is exact up to
# float32 rounding; the published 3-decimal inverse is only good to ~1e-3.
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)

COLOR_MATCH_MODES = ('pca', 'cholesky')


def _apply_matrix(matrix, pixels: jax.Array) -> jax.Array:
  """matrix float[3, 3] applied to every pixel of float32[..., 3]."""
  m = jnp.asarray(matrix, pixels.dtype)
  # 'highest': the default GPU/TPU precision (bf16/tf32 inputs) would cost the
  # round trip its 1e-6 exactness.
  return jnp.einsum('...j,ij->...i', pixels, m,
                    precision=jax.lax.Precision.HIGHEST)


def rgb_to_yiq(rgb: jax.Array) -> jax.Array:
  """RGB float32[..., 3] in [0, 1] -> YIQ float32[..., 3].

  Y is in [0, 1], I in [-0.596, 0.596], Q in [-0.523, 0.523].
  """
  return _apply_matrix(_RGB_TO_YIQ, rgb)


def yiq_to_rgb(yiq: jax.Array) -> jax.Array:
  """YIQ float32[..., 3] -> RGB float32[..., 3] (not clipped: may leave [0, 1])."""
  return _apply_matrix(_YIQ_TO_RGB, yiq)


def match_luminance(style_y: jax.Array, content_y: jax.Array,
                    eps: float = 1e-6) -> jax.Array:
  """Affine map of the style luminance onto the content's mean and spread.

  Gatys et al. 2017, section 5.1: L_s' = sigma_c / sigma_s (L_s - mu_s) + mu_c,
  with the mean and standard deviation over all pixels of each image.

  Args:
    style_y: style luminance float32[h, w] (any shape).
    content_y: content luminance float32[H, W] (any shape).
    eps: floor on sigma_s (a flat style maps to the constant mu_c).

  Returns:
    float32 of style_y's shape, with the content's mean and standard deviation
    (unclipped: it may leave [0, 1]).
  """
  mu_s, sigma_s = jnp.mean(style_y), jnp.std(style_y)
  mu_c, sigma_c = jnp.mean(content_y), jnp.std(content_y)
  return sigma_c / jnp.maximum(sigma_s, eps) * (style_y - mu_s) + mu_c


def _grey(y: jax.Array) -> jax.Array:
  return jnp.repeat(y[..., None], 3, axis=-1)


def luminance_image(rgb: jax.Array) -> jax.Array:
  """float32[..., 3] in [0, 1] -> its grey luminance image (all three
  channels Y, clipped to [0, 1]): what luminance-only mode optimises, and so
  the space of a result that a later optimisation starts from or is pulled
  towards (video frames)."""
  return _grey(jnp.clip(rgb_to_yiq(rgb)[..., 0], 0.0, 1.0))


def luminance_only(content_rgb: jax.Array, style_rgb: jax.Array
                   ) -> tuple[jax.Array, jax.Array]:
  """The grey images to optimise with in luminance-only mode.

  Args:
    content_rgb: float32[H, W, 3] in [0, 1].
    style_rgb: float32[h, w, 3] in [0, 1].

  Returns:
    (content_lum_rgb float32[H, W, 3], style_lum_rgb float32[h, w, 3]): grey
    images (all three channels equal to Y) in [0, 1]; the style's Y is first
    matched to the content's (`match_luminance`), then clipped to [0, 1],
    which moves its mean/std slightly where the match overshoots the range.
  """
  content_y = rgb_to_yiq(content_rgb)[..., 0]
  style_y = match_luminance(rgb_to_yiq(style_rgb)[..., 0], content_y)
  return luminance_image(content_rgb), _grey(jnp.clip(style_y, 0.0, 1.0))


def recombine_luminance(result_rgb: jax.Array,
                        content_rgb: jax.Array) -> jax.Array:
  """The result's luminance with the content's chroma: RGB float32[H, W, 3].

  Args:
    result_rgb: the stylised (grey) image float32[H, W, 3] in [0, 1]; only
      its Y is used, so any colour it picked up is dropped.
    content_rgb: float32[H, W, 3] in [0, 1], the source of I and Q.

  Returns:
    RGB float32[H, W, 3] clipped to [0, 1]. Clipping changes the chroma of
    pixels whose Y/I/Q combination falls outside the RGB cube (a bright
    luminance under a saturated colour).
  """
  if result_rgb.shape != content_rgb.shape:
    raise ValueError(f'result {result_rgb.shape} and content '
                     f'{content_rgb.shape} must have the same shape')
  y = rgb_to_yiq(result_rgb)[..., :1]
  iq = rgb_to_yiq(content_rgb)[..., 1:]
  return jnp.clip(yiq_to_rgb(jnp.concatenate([y, iq], axis=-1)), 0.0, 1.0)


def _sym_power(cov: jax.Array, power: float) -> jax.Array:
  """cov^power for a symmetric PSD float32[3, 3], by eigendecomposition."""
  values, vectors = jnp.linalg.eigh(cov)
  # Rounding can leave a zero eigenvalue (a grey or two-colour image) slightly
  # negative; callers add eps where they raise to a negative power.
  values = jnp.maximum(values, 0.0) ** power
  return (vectors * values) @ vectors.T


def match_color_histogram(style_rgb: jax.Array, content_rgb: jax.Array,
                          mode: str = 'pca', clip: bool = True,
                          eps: float = 1e-5) -> jax.Array:
  """Recolours the style image so its pixels' mean and covariance are the content's.

  A linear colour transfer x' = A (x - mu_s) + mu_c on every style pixel
  x float32[3] (Gatys et al. 2017, section 5.2): it matches the first two
  moments of the colour distribution, not the full histogram. Any A with
  A Sigma_s A^T = Sigma_c works; `mode` picks one:

  * 'pca': the symmetric square roots, A = Sigma_c^{1/2} Sigma_s^{-1/2}
    (eigendecompositions). Of the solutions it rotates colours the least
    when the two covariances share their axes.
  * 'cholesky': A = L_c L_s^{-1}, with Sigma = L L^T the Cholesky factors.
    Depends on the RGB channel order, hence less natural.

  Args:
    style_rgb: float32[h, w, 3] in [0, 1].
    content_rgb: float32[H, W, 3] in [0, 1].
    mode: 'pca' or 'cholesky' (static).
    clip: clip the result to [0, 1]. That moves the statistics slightly off
      the content's where the transfer overshoots the range.
    eps: added to the diagonal of Sigma_s ('pca'), or of both ('cholesky',
      whose factorisation needs positive definite matrices), so a style with
      degenerate colours (grey, two-tone) does not divide by zero. It biases
      the matched covariance by about eps / (the style's smallest variance).

  Returns:
    The recoloured style image float32[h, w, 3] (in [0, 1] when `clip`).
  """
  if mode not in COLOR_MATCH_MODES:
    raise ValueError(f'mode={mode!r}: use one of {list(COLOR_MATCH_MODES)}')
  # The pixels' mean float32[3] and (population) covariance float32[3, 3].
  mu_s, cov_s = formulas.feature_mean_cov(style_rgb)
  mu_c, cov_c = formulas.feature_mean_cov(content_rgb)
  eye = eps * jnp.eye(3, dtype=cov_s.dtype)
  if mode == 'pca':
    a = _sym_power(cov_c, 0.5) @ _sym_power(cov_s + eye, -0.5)
  else:
    l_c = jnp.linalg.cholesky(cov_c + eye)
    l_s = jnp.linalg.cholesky(cov_s + eye)
    # A = L_c L_s^{-1}, i.e. A^T = L_s^{-T} L_c^T: one triangular solve.
    a = jax.scipy.linalg.solve_triangular(l_s, l_c.T, trans='T',
                                          lower=True).T
  out = _apply_matrix(a, style_rgb - mu_s) + mu_c
  return jnp.clip(out, 0.0, 1.0) if clip else out
