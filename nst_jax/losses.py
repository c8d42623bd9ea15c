"""Style-transfer losses: content, Gram style and total variation (Gatys et al.).

All functions are pure and jit-friendly. Feature maps are post-ReLU VGG19
activations float32[h, w, C]; the image `x` being optimised is in VGG's Caffe
space (BGR, 0-255 minus the mean pixel, see `vgg.preprocess`), as in the seed.

Two normalisations, chosen statically by `LossSpec.normalization`:

* 'seed' (the seed's formulas, Gatys et al. 2015):
    content     = sum((F_x - F_c)^2)
    style layer = sum((G_x - G_s)^2) / (4 C^2 (h w)^2),  G = F^T F (C x C)
    tv          = sum((dx^2 + dy^2)^1.25)
  Their magnitudes grow with the image size (content and tv with the pixel
  count), so weights tuned at 256 px give a different balance at 1024 px.
* 'normalized' (resolution independent): every term is a mean, not a sum.
    content     = mean((F_x - F_c)^2)                   (over h, w, C)
    style layer = mean((G_x - G_s)^2),  G = F^T F / (h w)  (over C x C)
    tv          = mean((dx^2 + dy^2)^1.25)              (over pixels, channels)
  G / (h w) is a per-position average of feature products, so it does not
  change with the image size for a picture with the same content; the same
  holds for the means. (The seed's style term equals the normalised one / 4:
  that constant is folded into the weights.)

Three style losses, chosen statically by `LossSpec.style_loss` (per layer,
F = features float32[n, C] with n = h w positions; _s marks the style target):

* 'gram' (default): the Gram loss above.
* 'mean_cov': mean and covariance matching,
    mean((Sigma_x - Sigma_s)^2) + lam * mean((mu_x - mu_s)^2),
    lam = 2 mean(mu_s^2),
  with mu = mean over positions float32[C] and Sigma the (population)
  covariance float32[C, C]. This is NOT the Gaussian Wasserstein-2 distance:
  W2 needs matrix square roots whose gradients blow up as eigenvalues approach
  0 (and post-ReLU covariances are near singular); the Frobenius distance of
  the two moments is the usual practical stand-in. Normalisation: the
  covariance term is exactly the 'normalized' Gram loss of centred features,
  and lam is the weight a mean error gets, to first order, in the Gram loss
  (G / (h w) = Sigma + mu mu^T, so d(mu mu^T) has |.|_F^2 >= 2 |mu|^2 |dmu|^2);
  without it the mean term would be 1e-3 to 1e-5 of the covariance term on
  VGG features and the means would go unmatched. The loss is then homogeneous
  of degree 4 in the features like the Gram loss, and on real images
  (tubingen vs starry night, 96 px, VGG19 block1-5_conv1) it comes to
  0.86-1.06x the Gram loss per layer: weights tuned for 'gram' carry over.
* 'sliced_wasserstein': sliced Wasserstein-2 (squared) between the sets of
  feature vectors, over P = `LossSpec.sliced_projections` random unit
  directions per layer (fixed: drawn once into the targets):
    mean((sort(F_x D) - Q_s)^2) * mean(Q_s^2)
  with D float32[C, P] the directions, sort along positions, and Q_s
  float32[n_x, P] the style's sorted projections (its quantile functions)
  sampled at x's n_x positions. The factor mean(Q_s^2), the style's mean
  squared projection, again makes the loss degree-4 homogeneous like the Gram
  loss: on the real images above it comes to 1.0-1.9x the Gram loss per
  layer (P = 64).
  The target depends on x's size (n_x): it is taken from the content image,
  which x always matches.

Under 'seed' normalisation both new variants are divided by 4, like the Gram
loss, so that switching the style loss keeps the balance of the weights.

The combined loss takes its weights as traced arguments (they can be vmapped
for weight sweeps) and returns each term for logging.
"""

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from nst_jax import vgg

NORMALIZATIONS = ('seed', 'normalized')
STYLE_LOSSES = ('gram', 'mean_cov', 'sliced_wasserstein')


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """The static structure of the combined loss (hashable: a jit static arg).

  Attributes:
    content_layers: Keras names of the content layers.
    style_layers: Keras names of the style layers.
    pooling: 'max' or 'avg' pooling in VGG19.
    normalization: 'seed' or 'normalized' (see module docstring).
    style_loss: one of STYLE_LOSSES (see module docstring).
    sliced_projections: random directions per layer for 'sliced_wasserstein'.
  """
  content_layers: tuple[str, ...]
  style_layers: tuple[str, ...]
  pooling: str = 'max'
  normalization: str = 'seed'
  style_loss: str = 'gram'
  sliced_projections: int = 64

  def __post_init__(self):
    if self.style_loss not in STYLE_LOSSES:
      raise ValueError(f'style_loss={self.style_loss!r}: use one of '
                       f'{list(STYLE_LOSSES)}')
    if self.sliced_projections < 1:
      raise ValueError(f'sliced_projections={self.sliced_projections}: '
                       'need at least 1')

  @property
  def layers(self) -> tuple[str, ...]:
    """Every layer the loss reads, in network order."""
    wanted = set(self.content_layers) | set(self.style_layers)
    return tuple(layer for layer in vgg.CONV_LAYERS if layer in wanted)


def gram_matrix(features: jax.Array, normalize: bool = False) -> jax.Array:
  """Gram matrix of float32[h, w, C] features: float32[C, C] = F^T F.

  With `normalize`, divided by h * w (the average over positions).
  """
  h, w, c = features.shape
  flat = features.reshape(h * w, c)
  # 'highest' keeps the Gram exact in float32 on GPUs/TPUs, where the default
  # precision would round the inputs to bf16/tf32 and bias the style loss.
  gram = jnp.matmul(flat.T, flat, precision=jax.lax.Precision.HIGHEST)
  return gram / (h * w) if normalize else gram


def content_loss(features: jax.Array, target: jax.Array,
                 normalization: str = 'seed') -> jax.Array:
  """Squared feature distance: sum ('seed') or mean ('normalized'); scalar."""
  sq = jnp.square(features - target)
  return jnp.mean(sq) if normalization == 'normalized' else jnp.sum(sq)


def style_layer_loss(features: jax.Array, target_gram: jax.Array,
                     normalization: str = 'seed') -> jax.Array:
  """Gram loss of one layer: features float32[h, w, C], target float32[C, C].

  `target_gram` must come from `gram_matrix` with the same normalisation.
  """
  h, w, c = features.shape
  if normalization == 'normalized':
    return jnp.mean(jnp.square(gram_matrix(features, True) - target_gram))
  diff = gram_matrix(features) - target_gram
  return jnp.sum(jnp.square(diff)) / (4.0 * c ** 2 * (h * w) ** 2)


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
  cov = jnp.matmul(centred.T, centred, precision=jax.lax.Precision.HIGHEST)
  return mean, cov / (h * w)


def mean_cov_layer_loss(features: jax.Array, target: Mapping[str, jax.Array],
                        normalization: str = 'seed') -> jax.Array:
  """'mean_cov' style loss of one layer (see module docstring); scalar.

  Args:
    features: float32[h, w, C].
    target: {'mean': float32[C], 'cov': float32[C, C]} from
      `feature_mean_cov` (or a blend, see `compute_targets`).
    normalization: 'seed' (the 'normalized' value / 4) or 'normalized'.
  """
  mean, cov = feature_mean_cov(features)
  # The first-order weight of a mean error in the Gram loss (module docstring).
  mean_weight = 2.0 * jnp.mean(jnp.square(target['mean']))
  loss = (jnp.mean(jnp.square(cov - target['cov'])) +
          mean_weight * jnp.mean(jnp.square(mean - target['mean'])))
  return loss if normalization == 'normalized' else loss / 4.0


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
  proj = jnp.matmul(features.reshape(h * w, c), directions,
                    precision=jax.lax.Precision.HIGHEST)
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


def sliced_wasserstein_layer_loss(features: jax.Array,
                                  target: Mapping[str, jax.Array],
                                  normalization: str = 'seed') -> jax.Array:
  """'sliced_wasserstein' style loss of one layer (module docstring); scalar.

  Args:
    features: float32[h, w, C].
    target: {'directions': float32[C, P] unit columns, 'quantiles':
      float32[h * w, P] the style's sorted projections resampled to h * w}.
    normalization: 'seed' (the 'normalized' value / 4) or 'normalized'.

  Sorting makes it invariant to permutations of the positions; its gradient
  is that of the sorted order (a permutation), defined almost everywhere.
  """
  quantiles = target['quantiles']
  proj = sorted_projections(features, target['directions'])
  if proj.shape != quantiles.shape:
    raise ValueError(
        f'sliced_wasserstein target has {quantiles.shape[0]} positions but '
        f'the features have {proj.shape[0]}: compute the targets with a '
        'content image of the size of the image being optimised')
  # The style's mean squared projection: makes the loss degree-4 homogeneous
  # in the features like the Gram loss (see module docstring).
  scale = jnp.mean(jnp.square(quantiles))
  loss = jnp.mean(jnp.square(proj - quantiles)) * scale
  return loss if normalization == 'normalized' else loss / 4.0


_STYLE_LAYER_LOSSES = {
    'gram': style_layer_loss,
    'mean_cov': mean_cov_layer_loss,
    'sliced_wasserstein': sliced_wasserstein_layer_loss,
}


def feature_hw(image_hw: tuple[int, int], layer: str) -> tuple[int, int]:
  """(h, w) of `layer`'s features for an image (H, W): halved per pool, floor."""
  pools = vgg.layer_block(layer) - 1
  return image_hw[0] >> pools, image_hw[1] >> pools


def total_variation_loss(x: jax.Array, normalization: str = 'seed') -> jax.Array:
  """sum (or mean) of (dx^2 + dy^2)^1.25 over an image float32[H, W, 3]."""
  dy = x[:-1, :-1, :] - x[1:, :-1, :]
  dx = x[:-1, :-1, :] - x[:-1, 1:, :]
  # The power 1.25 (Mahendran & Vedaldi) penalises edges less than a square,
  # and its gradient is still zero (not NaN) where dx = dy = 0.
  tv = jnp.power(jnp.square(dx) + jnp.square(dy), 1.25)
  return jnp.mean(tv) if normalization == 'normalized' else jnp.sum(tv)


def style_targets(features: Mapping[str, jax.Array], spec: LossSpec, *,
                  key: jax.Array | None = None,
                  x_hw: tuple[int, int] | None = None) -> dict:
  """The style targets of one style image's features, by `spec.style_loss`.

  Args:
    features: {layer: float32[h, w, C]} for every layer in spec.style_layers.
    spec: the loss structure.
    key: PRNG key of the projection directions ('sliced_wasserstein' only).
      Layer l uses fold_in(key, its index in vgg.CONV_LAYERS), so its
      directions do not depend on which other layers are chosen.
    x_hw: (H, W) of the image that will be optimised ('sliced_wasserstein'
      only): its quantiles are resampled to that image's number of positions.

  Returns:
    {layer: target}, a target being
      'gram': float32[C, C], the Gram matrix (normalised by h w or not);
      'mean_cov': {'mean': float32[C], 'cov': float32[C, C]};
      'sliced_wasserstein': {'directions': float32[C, P],
                             'quantiles': float32[h_x * w_x, P]}.
  """
  if spec.style_loss == 'gram':
    normalize = spec.normalization == 'normalized'
    return {layer: gram_matrix(features[layer], normalize)
            for layer in spec.style_layers}
  if spec.style_loss == 'mean_cov':
    return {layer: dict(zip(('mean', 'cov'), feature_mean_cov(features[layer])))
            for layer in spec.style_layers}
  if key is None or x_hw is None:
    raise ValueError("style_loss='sliced_wasserstein' needs a PRNG key and "
                     'the size x_hw of the image being optimised')
  targets = {}
  for layer in spec.style_layers:
    f = features[layer]
    directions = random_directions(
        jax.random.fold_in(key, vgg.CONV_LAYERS.index(layer)), f.shape[-1],
        spec.sliced_projections, f.dtype)
    h, w = feature_hw(x_hw, layer)
    targets[layer] = {
        'directions': directions,
        'quantiles': resample_quantiles(sorted_projections(f, directions),
                                        h * w)}
  return targets


def _blend_style_targets(per_style: list[dict], blend: jax.Array,
                         spec: LossSpec) -> dict:
  """Blends the style targets of several images with weights `blend`.

  'gram': the weighted sum of the Grams. 'sliced_wasserstein': the weighted
  sum of the quantile functions, which is the Wasserstein-2 barycenter of the
  1-D projected distributions (the directions are the same for every style).
  'mean_cov': the moments of the mixture of the styles' feature distributions,
  mu = sum_i w_i mu_i and E[f f^T] = sum_i w_i E_i[f f^T], with
  Sigma = E[f f^T] - mu mu^T computed in the equivalent, cancellation-free
  form sum_i w_i (Sigma_i + (mu_i - mu)(mu_i - mu)^T) (law of total
  covariance; equal when the weights sum to 1).
  """
  if spec.style_loss == 'gram':
    grams = None
    for weight, g in zip(blend, per_style):
      g = jax.tree.map(lambda a: weight * a, g)
      grams = g if grams is None else jax.tree.map(jnp.add, grams, g)
    return grams
  blended = {}
  for layer in spec.style_layers:
    if spec.style_loss == 'sliced_wasserstein':
      blended[layer] = {
          'directions': per_style[0][layer]['directions'],
          'quantiles': sum(w * t[layer]['quantiles']
                           for w, t in zip(blend, per_style))}
    else:  # mean_cov
      mean = sum(w * t[layer]['mean'] for w, t in zip(blend, per_style))
      cov = sum(w * (t[layer]['cov'] +
                     jnp.outer(t[layer]['mean'] - mean, t[layer]['mean'] - mean))
                for w, t in zip(blend, per_style))
      blended[layer] = {'mean': mean, 'cov': cov}
  return blended


def compute_targets(params: Mapping, content: jax.Array,
                    styles: jax.Array | list, style_blend: jax.Array | None,
                    spec: LossSpec, *, key: jax.Array | None = None) -> dict:
  """Content features and (blended) style targets, computed once per run.

  Args:
    params: VGG19 params.
    content: Caffe-preprocessed content image float32[H, W, 3]; the image
      being optimised must have its size ('sliced_wasserstein' relies on it).
    styles: a list of Caffe-preprocessed style images float32[h_i, w_i, 3]
      (sizes may differ).
    style_blend: float32[len(styles)] weights that sum to 1, or None for equal.
    spec: the loss structure.
    key: PRNG key of the random projections; required for
      'sliced_wasserstein', ignored otherwise.

  Returns:
    {'content': {layer: float32[h, w, C]}, 'style': {layer: target}}, the
    targets as described in `style_targets`.
  """
  if spec.style_loss == 'sliced_wasserstein' and key is None:
    raise ValueError("style_loss='sliced_wasserstein' needs compute_targets("
                     '..., key=...) for its random projections')
  content_features = vgg.extract_features(params, content, spec.content_layers,
                                          spec.pooling)
  if style_blend is None:
    style_blend = jnp.full((len(styles),), 1.0 / len(styles))
  x_hw = tuple(content.shape[-3:-1])
  per_style = [
      style_targets(vgg.extract_features(params, style, spec.style_layers,
                                         spec.pooling), spec, key=key,
                    x_hw=x_hw)
      for style in styles]
  return {'content': content_features,
          'style': _blend_style_targets(per_style, style_blend, spec)}


def combined_loss(x: jax.Array, params: Mapping, targets: Mapping,
                  weights: Mapping[str, jax.Array], spec: LossSpec
                  ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The weighted total loss of an image and its terms.

  Args:
    x: the image being optimised, Caffe space float32[H, W, 3].
    params: VGG19 params (traced: never closed over).
    targets: from `compute_targets` with the same spec.
    weights: traced scalars 'content', 'style', 'tv' and the per-layer vectors
      'content_layers' float32[len(spec.content_layers)] and 'style_layers'
      float32[len(spec.style_layers)].
    spec: static loss structure.

  Returns:
    (total, {'content', 'style', 'tv', 'total'}): each term already multiplied
    by its weight, so the terms sum to the total.
  """
  features = vgg.extract_features(params, x, spec.layers, spec.pooling)
  norm = spec.normalization
  content = sum(weights['content_layers'][i] *
                content_loss(features[layer], targets['content'][layer], norm)
                for i, layer in enumerate(spec.content_layers))
  layer_loss = _STYLE_LAYER_LOSSES[spec.style_loss]
  style = sum(weights['style_layers'][i] *
              layer_loss(features[layer], targets['style'][layer], norm)
              for i, layer in enumerate(spec.style_layers))
  terms = {
      'content': weights['content'] * content,
      'style': weights['style'] * style,
      'tv': weights['tv'] * total_variation_loss(x, norm),
  }
  total = terms['content'] + terms['style'] + terms['tv']
  return total, {**terms, 'total': total}
