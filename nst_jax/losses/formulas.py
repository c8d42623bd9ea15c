"""The maths of the loss terms: pure functions of arrays, no VGG, no paths.

Feature maps are float32[h, w, C] (h w positions of C channels); images
float32[H, W, 3]. Every function is jit-friendly and differentiable.
"""

import jax
import jax.numpy as jnp

# 'highest' keeps matrix products exact in float32 on GPUs/TPUs, where the
# default precision would round the inputs to bf16/tf32 and bias the losses.
HIGHEST = jax.lax.Precision.HIGHEST


def gram_matrix(features: jax.Array, normalize: bool = False) -> jax.Array:
  """Gram matrix of float32[h, w, C] features: float32[C, C] = F^T F.

  With `normalize`, divided by h * w (the average over positions).
  """
  h, w, c = features.shape
  flat = features.reshape(h * w, c)
  gram = jnp.matmul(flat.T, flat, precision=HIGHEST)
  return gram / (h * w) if normalize else gram


def feature_mean_cov(features: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean float32[C] and covariance float32[C, C] of float32[h, w, C] features.

  Statistics over the h * w positions; the covariance is the population one
  (divided by h * w, not h * w - 1), matching `gram_matrix(.., True)`.
  """
  h, w, c = features.shape
  flat = features.reshape(h * w, c)
  mean = jnp.mean(flat, axis=0)
  # Centre first: F^T F / n - mu mu^T cancels catastrophically in float32
  # where the means are large against the spread (deep VGG layers).
  centred = flat - mean
  cov = jnp.matmul(centred.T, centred, precision=HIGHEST)
  return mean, cov / (h * w)


def random_directions(key: jax.Array, channels: int, num: int,
                      dtype=jnp.float32) -> jax.Array:
  """`num` random unit vectors, uniform on the sphere: float[channels, num]."""
  d = jax.random.normal(key, (channels, num), dtype)
  return d / jnp.linalg.norm(d, axis=0, keepdims=True)


def sorted_projections(features: jax.Array, directions: jax.Array) -> jax.Array:
  """Features float32[h, w, C] projected on float32[C, P], sorted: [h w, P].

  Column p is the empirical quantile function of the features along
  direction p (its values in increasing order).
  """
  h, w, c = features.shape
  proj = jnp.matmul(features.reshape(h * w, c), directions, precision=HIGHEST)
  return jnp.sort(proj, axis=0)


def resample_quantiles(sorted_values: jax.Array, num: int) -> jax.Array:
  """Quantile functions float32[n, P] resampled to float32[num, P].

  Sample i of n stands for probability (i + 0.5) / n; the result is sampled
  at (k + 0.5) / num by linear interpolation, constant beyond the first and
  last samples. With num == n it returns the input unchanged.
  """
  n = sorted_values.shape[0]
  dtype = sorted_values.dtype
  probs = (jnp.arange(n, dtype=dtype) + 0.5) / n
  new_probs = (jnp.arange(num, dtype=dtype) + 0.5) / num
  interp = jax.vmap(jnp.interp, in_axes=(None, None, 1), out_axes=1)
  return interp(new_probs, probs, sorted_values)


def total_variation_loss(x: jax.Array, normalization: str = 'seed') -> jax.Array:
  """sum (or mean) of (dx^2 + dy^2)^1.25 over an image float32[H, W, 3]."""
  dy = x[:-1, :-1, :] - x[1:, :-1, :]
  dx = x[:-1, :-1, :] - x[:-1, 1:, :]
  # The power 1.25 (Mahendran & Vedaldi) penalises edges less than a square,
  # and its gradient is still zero (not NaN) where dx = dy = 0.
  tv = jnp.power(jnp.square(dx) + jnp.square(dy), 1.25)
  return jnp.mean(tv) if normalization == 'normalized' else jnp.sum(tv)


def halve(image: jax.Array) -> jax.Array:
  """float[H, W, C] -> float[H // 2, W // 2, C]: the mean of each 2x2 block.

  A linear (area) downsampling: an odd last row or column is dropped. The
  style pyramid halves the picture and the style images with it alike.
  """
  h, w, c = image.shape
  blocks = image[:h // 2 * 2, :w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c)
  return jnp.mean(blocks, axis=(1, 3))


def style_pyramid_levels(hw: tuple[int, int], coarsest: int,
                         min_side: int = 1) -> int:
  """Levels of the style pyramid for an (H, W) picture; 1 = no pyramid.

  The picture is halved while its long side exceeds sqrt(2) * `coarsest`
  (so the last level's long side is the halving nearest `coarsest` on a log
  scale) and the halved short side stays >= `min_side`. `coarsest` <= 0
  turns the pyramid off. E.g. coarsest 256: 512 px -> 2 levels (512, 256),
  1024 px -> 3, 4096 px -> 5; 362 px and below -> 1.
  """
  levels = 1
  if coarsest <= 0:
    return levels
  while (max(hw) >> (levels - 1)) > 2 ** 0.5 * coarsest and \
      (min(hw) >> levels) >= min_side:
    levels += 1
  return levels
