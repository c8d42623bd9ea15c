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

The combined loss takes its weights as traced arguments (they can be vmapped
for weight sweeps) and returns each term for logging.
"""

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from nst_jax import vgg

NORMALIZATIONS = ('seed', 'normalized')


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """The static structure of the combined loss (hashable: a jit static arg).

  Attributes:
    content_layers: Keras names of the content layers.
    style_layers: Keras names of the style layers.
    pooling: 'max' or 'avg' pooling in VGG19.
    normalization: 'seed' or 'normalized' (see module docstring).
  """
  content_layers: tuple[str, ...]
  style_layers: tuple[str, ...]
  pooling: str = 'max'
  normalization: str = 'seed'

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


def total_variation_loss(x: jax.Array, normalization: str = 'seed') -> jax.Array:
  """sum (or mean) of (dx^2 + dy^2)^1.25 over an image float32[H, W, 3]."""
  dy = x[:-1, :-1, :] - x[1:, :-1, :]
  dx = x[:-1, :-1, :] - x[:-1, 1:, :]
  # The power 1.25 (Mahendran & Vedaldi) penalises edges less than a square,
  # and its gradient is still zero (not NaN) where dx = dy = 0.
  tv = jnp.power(jnp.square(dx) + jnp.square(dy), 1.25)
  return jnp.mean(tv) if normalization == 'normalized' else jnp.sum(tv)


def style_targets(features: Mapping[str, jax.Array], spec: LossSpec
                  ) -> dict[str, jax.Array]:
  """Target Gram matrices {layer: float32[C, C]} of a style image's features."""
  normalize = spec.normalization == 'normalized'
  return {layer: gram_matrix(features[layer], normalize)
          for layer in spec.style_layers}


def compute_targets(params: Mapping, content: jax.Array,
                    styles: jax.Array | list, style_blend: jax.Array | None,
                    spec: LossSpec) -> dict:
  """Content features and (blended) style Grams, computed once per run.

  Args:
    params: VGG19 params.
    content: Caffe-preprocessed content image float32[H, W, 3].
    styles: a list of Caffe-preprocessed style images float32[h_i, w_i, 3]
      (sizes may differ).
    style_blend: float32[len(styles)] weights that sum to 1, or None for equal.
    spec: the loss structure.

  Returns:
    {'content': {layer: float32[h, w, C]}, 'style': {layer: float32[C, C]}}.
  """
  content_features = vgg.extract_features(params, content, spec.content_layers,
                                          spec.pooling)
  if style_blend is None:
    style_blend = jnp.full((len(styles),), 1.0 / len(styles))
  grams = None
  for weight, style in zip(style_blend, styles):
    g = style_targets(vgg.extract_features(params, style, spec.style_layers,
                                           spec.pooling), spec)
    g = jax.tree.map(lambda a: weight * a, g)
    grams = g if grams is None else jax.tree.map(jnp.add, grams, g)
  return {'content': content_features, 'style': grams}


def combined_loss(x: jax.Array, params: Mapping, targets: Mapping,
                  weights: Mapping[str, jax.Array], spec: LossSpec
                  ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The weighted total loss of an image and its terms.

  Args:
    x: the image being optimised, Caffe space float32[H, W, 3].
    params: VGG19 params (traced: never closed over).
    targets: from `compute_targets`.
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
  style = sum(weights['style_layers'][i] *
              style_layer_loss(features[layer], targets['style'][layer], norm)
              for i, layer in enumerate(spec.style_layers))
  terms = {
      'content': weights['content'] * content,
      'style': weights['style'] * style,
      'tv': weights['tv'] * total_variation_loss(x, norm),
  }
  total = terms['content'] + terms['style'] + terms['tv']
  return total, {**terms, 'total': total}
