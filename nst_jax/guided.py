"""Guided style statistics: each region's statistics over its own positions.

Gatys et al. 2017 (arXiv 1611.07865, section 4) guide the Gram matrix with
a mask per region: with features F float32[n, C] (n = h w positions) and
masks T float32[n, R] in [0, 1] (`regions.layer_masks`),

  guided Gram  G_r = (F * T_r)^T (F * T_r) / sum(T_r^2)        float32[R, C, C]

a per-position average like `losses.gram_matrix(.., normalize=True)`, which
it equals for T_r = 1. Its numerator and denominator are sums over positions
(`guided_gram_sums`), so tiles of the picture add them exactly.

'mean_cov' takes each region's weighted distribution, position p weighing
T_r(p) (memberships, which sum to 1 over the regions, so every position is
counted once in all): mean mu_r = sum(T_r f) / sum(T_r) and covariance
sum(T_r (f - mu_r)(f - mu_r)^T) / sum(T_r), centred on the means first
(`guided_moments`; the loss term, `losses.GuidedStyle`, adds its tiles'
moments about the target's means, as `losses.MeanCov` does).

'sliced_wasserstein' compares weighted distributions of the projections
F D (D float32[C, P] unit directions). Sorting the projections once orders
every region alike; each region then weighs the sorted positions by its
mask (`sort_with_weights`). A region's quantile function is the inverse of
its weighted CDF: Q_r(u) = s_i for the first sorted position i whose
cumulative weight reaches u sum(T_r) (`weighted_quantiles`, the target,
sampled at K probabilities (k + 0.5) / K). Positions of weight 0 are never
chosen, so nothing outside a region leaks into its target. The distance
(`guided_sliced_distance`) is the weighted W2^2 of the picture's region
against that target: sum_i w_i (s_i - Q(P_i))^2 / sum(w) with P_i the
midpoint of position i's step of the weighted CDF. For T_r = 1 and K = n
both reduce to `losses.sorted_projections` and the mean squared difference
of `losses`' 'sliced_wasserstein' (without its mean(Q^2) scale, which the
loss term applies).

Everything is pure and jit-friendly; shapes are static, masks and features
traced. Matmuls use 'highest' precision, like `losses.gram_matrix`.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST


def _flat(features: jax.Array, masks: jax.Array) -> tuple[jax.Array, jax.Array]:
  """float32[h, w, C] and [h, w, R] -> [n, C] and [n, R] (n = h w)."""
  if features.shape[:-1] != masks.shape[:-1]:
    raise ValueError(f'features {features.shape} and masks {masks.shape} '
                     'cover different positions: take the masks from '
                     'regions.layer_masks at the same image size')
  return (jnp.asarray(features).reshape(-1, features.shape[-1]),
          jnp.asarray(masks).reshape(-1, masks.shape[-1]))


def guided_gram_sums(features: jax.Array, masks: jax.Array
                     ) -> tuple[jax.Array, jax.Array]:
  """The guided Grams as sums over positions.

  Args:
    features: float32[h, w, C] (or [n, C]).
    masks: float32[h, w, R] (or [n, R]) region weights in [0, 1].

  Returns:
    (float32[R, C, C] sum_p T_r(p)^2 f_p f_p^T, float32[R] sum_p T_r(p)^2):
    both add over disjoint sets of positions (tiles).
  """
  flat, weights = _flat(features, masks)
  (n, c), r = flat.shape, weights.shape[-1]
  squares = jnp.square(weights)
  # sum_p T_r^2 f f^T = (T_r^2 F)^T F for every r in one matrix product:
  # [T_1^2 F | ... | T_R^2 F]^T F, float32[R C, C]. A batched product of
  # the R copies of T_r F cost 1.8x this on the CPU (loss and gradient at
  # block1_conv1, 512 px, two regions: 4.6x the plain Gram against 2.6x;
  # docs/regions.md).
  stacked = (flat[:, None, :] * squares[:, :, None]).reshape(n, r * c)
  sums = jnp.einsum('nk,nd->kd', stacked, flat, precision=_HIGHEST)
  return sums.reshape(r, c, c), jnp.sum(squares, axis=0)


def guided_gram(features: jax.Array, masks: jax.Array) -> jax.Array:
  """float32[R, C, C]: G_r = (F * T_r)^T (F * T_r) / sum(T_r^2).

  A region of weight 0 gets a zero Gram (callers refuse empty regions).
  """
  sums, weight = guided_gram_sums(features, masks)
  return sums / jnp.maximum(weight, jnp.finfo(sums.dtype).tiny)[:, None, None]


class Moments(NamedTuple):
  """Per-region weighted moments."""
  weight: jax.Array  # float32[R]: sum_p T_r(p)
  mean: jax.Array  # float32[R, C]: sum_p T_r(p) f_p / weight (0 if empty)
  m2: jax.Array  # float32[R, C, C]: sum_p T_r(p) (f_p - mean)(f_p - mean)^T


def guided_moments(features: jax.Array, masks: jax.Array) -> Moments:
  """Each region's weight, mean and centred second moment (weights T_r).

  features float32[h, w, C] (or [n, C]), masks float32[h, w, R] (or [n, R]).
  """
  flat, weights = _flat(features, masks)
  weight = jnp.sum(weights, axis=0)
  total = jnp.matmul(weights.T, flat, precision=_HIGHEST)  # [R, C]
  mean = total / jnp.maximum(weight, jnp.finfo(flat.dtype).tiny)[:, None]
  # Centre first: sum(T f f^T) - w mu mu^T cancels in float32 where the
  # means are large against the spread (deep VGG layers).
  centred = flat[None] - mean[:, None]  # [R, n, C]
  m2 = jnp.einsum('rnc,rnd->rcd', weights.T[:, :, None] * centred, centred,
                  precision=_HIGHEST)
  return Moments(weight, mean, m2)


def mean_cov(moments: Moments) -> tuple[jax.Array, jax.Array]:
  """(float32[R, C] mean, float32[R, C, C] covariance = m2 / weight)."""
  safe = jnp.maximum(moments.weight, jnp.finfo(moments.m2.dtype).tiny)
  return moments.mean, moments.m2 / safe[:, None, None]


def guided_mean_cov(features: jax.Array, masks: jax.Array
                    ) -> tuple[jax.Array, jax.Array]:
  """Weighted mean float32[R, C] and covariance float32[R, C, C] per region.

  For masks of ones: `losses.feature_mean_cov` (population covariance).
  """
  return mean_cov(guided_moments(features, masks))


def sort_with_weights(projections: jax.Array, masks: jax.Array
                      ) -> tuple[jax.Array, jax.Array]:
  """Projections sorted per direction, with each region's weights alike.

  Args:
    projections: float32[n, P], the features' projections F D in the
      picture's row-major position order (tiles: gathered back first).
    masks: float32[n, R] (or [h, w, R]) in the same order.

  Returns:
    (float32[n, P] sorted projections (stable sort: ties keep the position
    order, as `losses` sorts), float32[R, n, P] each region's weight at the
    sorted positions).
  """
  weights = jnp.asarray(masks).reshape(-1, masks.shape[-1])
  order = jnp.argsort(projections, axis=0, stable=True)  # [n, P]
  sorted_values = jnp.take_along_axis(projections, order, axis=0)
  return sorted_values, jnp.moveaxis(weights[order], -1, 0)


def guided_sorted_projections(features: jax.Array, masks: jax.Array,
                              directions: jax.Array
                              ) -> tuple[jax.Array, jax.Array]:
  """`sort_with_weights` of float32[h, w, C] features projected on [C, P]."""
  flat, weights = _flat(features, masks)
  projections = jnp.matmul(flat, directions, precision=_HIGHEST)
  return sort_with_weights(projections, weights)


def weighted_quantiles(sorted_values: jax.Array, weights: jax.Array,
                       num: int) -> jax.Array:
  """One region's quantile functions float32[n, P] sampled at num points.

  Args:
    sorted_values: float32[n, P], each column sorted.
    weights: float32[n, P], the region's weight at each sorted position
      (`sort_with_weights(..)[1][r]`), not all 0.
    num: samples K; static.

  Returns:
    float32[K, P]: Q(u_k) at u_k = (k + 0.5) / K, Q(u) the first sorted value
    whose cumulative weight reaches u of the total (the weighted empirical
    quantile function; a step function). Weights of ones and K = n give the
    sorted values back.
  """
  cumulative = jnp.cumsum(weights, axis=0)
  # Divided by the last sum itself, the CDF ends at exactly 1.
  cdf = cumulative / jnp.maximum(cumulative[-1:], jnp.finfo(weights.dtype).tiny)
  probs = (jnp.arange(num, dtype=sorted_values.dtype) + 0.5) / num
  search = jax.vmap(lambda c: jnp.searchsorted(c, probs, side='left'),
                    in_axes=1, out_axes=1)
  index = jnp.minimum(search(cdf), sorted_values.shape[0] - 1)
  return jnp.take_along_axis(sorted_values, index, axis=0)


def guided_sliced_distance(sorted_values: jax.Array, weights: jax.Array,
                           quantiles: jax.Array) -> jax.Array:
  """Weighted W2^2 of one region of the picture against its target; scalar.

  Args:
    sorted_values: float32[n, P], the picture's sorted projections.
    weights: float32[n, P], the region's weights at them (sort_with_weights).
    quantiles: float32[K, P], the target (`weighted_quantiles`).

  Returns:
    mean over directions of sum_i w_i (s_i - Q(P_i))^2 / sum_i w_i, with
    P_i = (cumulative weight up to i - w_i / 2) / total the midpoint of
    position i's probability step and Q(P_i) the target's sample
    floor(P_i K). Gradients flow through s_i (the sort order, and so P_i, is
    piecewise constant); positions of weight 0 contribute nothing.
  """
  num = quantiles.shape[0]
  cumulative = jnp.cumsum(weights, axis=0)
  total = jnp.maximum(cumulative[-1:], jnp.finfo(weights.dtype).tiny)
  mid = (cumulative - 0.5 * weights) / total
  index = jnp.clip(jnp.floor(mid * num).astype(jnp.int32), 0, num - 1)
  target = jnp.take_along_axis(quantiles, index, axis=0)
  per_direction = jnp.sum(weights * jnp.square(sorted_values - target),
                          axis=0) / total[0]
  return jnp.mean(per_direction)
