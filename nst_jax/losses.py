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

Three ways to compute the same loss and gradient, chosen statically by
`LossSpec.memory` (nst_jax.memory estimates each one's peak and picks one):

* 'plain': the whole image through VGG19; autodiff keeps every activation.
* 'remat': the same, with each VGG block checkpointed and every per-layer
  statistic (Gram matrix, mean and covariance, projections, content sum of
  squares) taken inside the block's checkpoint, so the backward pass keeps
  block inputs and statistics and recomputes the convolutions.
* 'tiles': the image is cut into square tiles of `LossSpec.tile` px, aligned
  to the deepest pool (`tile_stride`), and each runs through VGG19 on a crop
  with a halo (`tile_halo`) wide enough that its own part of every feature
  map equals the whole image's: the crop's conv inputs are zeroed outside
  the image (as 'SAME' padding is at the image's border), and the pools see
  the whole image's grid. Every statistic is a sum over positions, so the
  tiles' sums give the whole image's: Grams F^T F, content sums of squares,
  means with centred second moments (combined by Chan et al.'s parallel
  formula, no E[ff^T] - mu mu^T cancellation), and the projections of
  sliced Wasserstein, gathered back in the image's order and sorted whole.
  The tiles run in a `lax.map` with each tile checkpointed, so the backward
  pass holds one tile's activations at a time. TV is taken on the whole image.

A style pyramid, chosen statically by `LossSpec.style_levels` = L: the style
loss is summed over the picture and its L - 1 successive halvings (`halve`,
the mean of each 2x2 block), each against the style image halved the same
way. VGG19's receptive fields are fixed in pixels, so at 1024 px the loss
alone sees only strokes an eighth of the size it sees at 256 px; the coarse
levels keep the large strokes, so `image_size` changes the resolution rather
than the look (README, Defaults). The content and TV terms stay at full size.

The combined loss takes its weights as traced arguments (they can be vmapped
for weight sweeps) and returns each term for logging.
"""

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from nst_jax import vgg

NORMALIZATIONS = ('seed', 'normalized')
STYLE_LOSSES = ('gram', 'mean_cov', 'sliced_wasserstein')
MEMORY_PATHS = ('plain', 'remat', 'tiles')
# Tile side (px) of memory='tiles' when LossSpec.tile is 0.
DEFAULT_TILE = 512


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
    memory: how the gradient's memory is bounded, one of MEMORY_PATHS; every
      path gives the same loss and gradient (to float32 rounding):
      'plain' keeps every activation for the backward pass (fastest);
      'remat' checkpoints each VGG block (keeps block inputs and per-layer
      statistics, recomputes the convolutions: about 1.3x the time);
      'tiles' runs the network on square tiles of `tile` px with a halo
      (`tile_halo`) and sums per-layer statistics over them; the backward
      pass recomputes one tile at a time, so memory follows the tile.
    tile: tile side for 'tiles', px, rounded up to a multiple of
      `tile_stride`; 0 means DEFAULT_TILE.
    style_levels: levels of the style pyramid (1 = the picture alone); see
      `style_pyramid_levels` and the module docstring.
  """
  content_layers: tuple[str, ...]
  style_layers: tuple[str, ...]
  pooling: str = 'max'
  normalization: str = 'seed'
  style_loss: str = 'gram'
  sliced_projections: int = 64
  memory: str = 'plain'
  tile: int = 0
  style_levels: int = 1

  def __post_init__(self):
    if self.style_loss not in STYLE_LOSSES:
      raise ValueError(f'style_loss={self.style_loss!r}: use one of '
                       f'{list(STYLE_LOSSES)}')
    if self.sliced_projections < 1:
      raise ValueError(f'sliced_projections={self.sliced_projections}: '
                       'need at least 1')
    if self.memory not in MEMORY_PATHS:
      raise ValueError(f'memory={self.memory!r}: use one of {list(MEMORY_PATHS)}')
    if self.tile < 0:
      raise ValueError(f'tile={self.tile}: use 0 (the default) or a side in px')
    if self.style_levels < 1:
      raise ValueError(f'style_levels={self.style_levels}: need at least 1')

  @property
  def layers(self) -> tuple[str, ...]:
    """Every layer the loss reads, in network order."""
    wanted = set(self.content_layers) | set(self.style_layers)
    return tuple(layer for layer in vgg.CONV_LAYERS if layer in wanted)

  def relative_cost(self, hw: tuple[int, int]) -> float:
    """Time per pixel of one evaluation on this memory path, plain = 1.

    A model for the run's ETA across scales, not a measurement: 'remat'
    repeats the forward pass (about a third of forward + backward), and
    'tiles' repeats it too, on crops that include the halo. On the 2-core
    CPU at 2048 px this gives 2.3 for 512 px tiles, measured 2.1 (README).
    """
    if self.memory == 'plain':
      return 1.0
    if self.memory == 'remat':
      return 4 / 3
    side, halo, rows, cols = tile_grid(hw, self.layers, self.tile)
    return 4 / 3 * rows * cols * (side + 2 * halo) ** 2 / (hw[0] * hw[1])

  def describe_memory(self, hw: tuple[int, int]) -> str:
    """The memory path for an (H, W) image, in words, for the run's log."""
    if self.memory == 'plain':
      return 'plain (the whole network)'
    if self.memory == 'remat':
      return 'remat (activations recomputed per VGG block)'
    side, halo, rows, cols = tile_grid(hw, self.layers, self.tile)
    return f'tiles ({rows}x{cols} tiles of {side} px, halo {halo} px)'


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
  h, w, _ = features.shape
  return _gram_loss(gram_matrix(features), h * w, target_gram, normalization)


def _gram_loss(gram: jax.Array, positions: int, target_gram: jax.Array,
               normalization: str) -> jax.Array:
  """Gram loss from the unnormalised Gram float32[C, C] of `positions` rows."""
  c = gram.shape[-1]
  if normalization == 'normalized':
    return jnp.mean(jnp.square(gram / positions - target_gram))
  diff = gram - target_gram
  return jnp.sum(jnp.square(diff)) / (4.0 * c ** 2 * positions ** 2)


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
  return _mean_cov_loss(*feature_mean_cov(features), target, normalization)


def _mean_cov_loss(mean: jax.Array, cov: jax.Array,
                   target: Mapping[str, jax.Array],
                   normalization: str) -> jax.Array:
  """'mean_cov' loss from the features' mean float32[C] and cov [C, C]."""
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
  return _sliced_loss(sorted_projections(features, target['directions']),
                      target, normalization)


def _sliced_loss(proj: jax.Array, target: Mapping[str, jax.Array],
                 normalization: str) -> jax.Array:
  """'sliced_wasserstein' loss from sorted projections float32[n, P]."""
  quantiles = target['quantiles']
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
    directions = _directions(key, layer, f.shape[-1], spec, f.dtype)
    h, w = feature_hw(x_hw, layer)
    targets[layer] = {
        'directions': directions,
        'quantiles': resample_quantiles(sorted_projections(f, directions),
                                        h * w)}
  return targets


def tile_stride(layers: Sequence[str]) -> int:
  """Tiles start at multiples of this (px): 2**(deepest block - 1).

  Then every tile's pooling grid is the whole image's, at every layer.
  """
  return vgg.min_image_side(layers)


def tile_halo(layers: Sequence[str]) -> int:
  """Border (px, a multiple of `tile_stride`) a tile's crop needs on each side.

  A crop's own border pads with zeros where the image has pixels; that error
  spreads one position per 3x3 conv and is halved (rounding up) by each pool.
  Counting it through the layers up to the deepest gives the width, at the
  deepest level, of the band the crop gets wrong; the halo is that band in
  input pixels, so a tile's interior sees exactly what the whole image does
  (e.g. 96 px for block5_conv2, 80 for block5_conv1).
  """
  wrong = 0
  for block, names in vgg.block_layers(layers).items():
    if block > 1:
      wrong = -(-wrong // 2)
    wrong += len(names)
  return wrong * tile_stride(layers)


def tile_side(layers: Sequence[str], tile: int = 0) -> int:
  """Tile side (px) actually used: `tile` (0: DEFAULT_TILE) rounded up to a
  multiple of `tile_stride`."""
  stride = tile_stride(layers)
  return -(-(tile or DEFAULT_TILE) // stride) * stride


def tile_grid(hw: tuple[int, int], layers: Sequence[str], tile: int = 0
              ) -> tuple[int, int, int, int]:
  """(side, halo, rows, cols) of the tiling of an (H, W) image, px and counts.

  The side is `tile_side`, but no larger than the image needs.
  """
  side = min(tile_side(layers, tile), tile_side(layers, max(hw)))
  return (side, tile_halo(layers), -(-hw[0] // side), -(-hw[1] // side))


def _tiled(image: jax.Array, layers: Sequence[str], tile: int,
           tile_fn: Callable, checkpoint: bool) -> Any:
  """Runs tile_fn(crop, origin, (i, j)) over the tiles of an image; stacks them.

  Args:
    image: float32[H, W, 3], Caffe space.
    layers: the layers the tiles must get right (sets stride and halo).
    tile: LossSpec.tile.
    tile_fn: (crop float32[side + 2 halo, side + 2 halo, 3], origin (row, col)
      of the crop's first pixel in the image (traced ints, may be negative),
      tile index (i, j) (traced ints)) -> pytree.
    checkpoint: recompute each tile in the backward pass instead of keeping
      its activations (memory follows one tile).

  Returns:
    tile_fn's pytree with a leading axis over the rows * cols tiles (row-major).
  """
  height, width = image.shape[:2]
  side, halo, rows, cols = tile_grid((height, width), layers, tile)
  # Zero padding makes every crop the same shape (one compiled tile); the
  # padding itself is masked out inside the network (vgg.run_network valid).
  padded = jnp.pad(image, ((halo, rows * side - height + halo),
                           (halo, cols * side - width + halo), (0, 0)))
  crop_side = side + 2 * halo

  def one_tile(padded, index):
    i, j = index // cols, index % cols
    crop = jax.lax.dynamic_slice(padded, (i * side, j * side, 0),
                                 (crop_side, crop_side, 3))
    return tile_fn(crop, (i * side - halo, j * side - halo), (i, j))

  if checkpoint:
    one_tile = jax.checkpoint(one_tile)
  return jax.lax.map(lambda index: one_tile(padded, index),
                     jnp.arange(rows * cols))


def _tile_interior(layer: str, layers: Sequence[str], tile: int,
                   image_hw: tuple[int, int], feature: jax.Array, ij
                   ) -> tuple[jax.Array, jax.Array]:
  """A tile's own part of a crop's feature float32[h, w, C] at `layer`.

  Returns (float32[t, t, C], bool[t, t, 1]: which of its positions lie in the
  image's feature map; the last row and column of tiles overhang it).
  """
  side, halo, _, _ = tile_grid(image_hw, layers, tile)
  step = 2 ** (vgg.layer_block(layer) - 1)
  own, border = side // step, halo // step
  part = feature[border:border + own, border:border + own]
  rows = jnp.arange(own) + ij[0] * own
  cols = jnp.arange(own) + ij[1] * own
  fh, fw = feature_hw(image_hw, layer)
  inside = (rows < fh)[:, None, None] & (cols < fw)[None, :, None]
  return part, inside


def _statistics(params: Mapping, x: jax.Array, spec: LossSpec,
                content_targets: Mapping | None, directions: Mapping | None,
                style_layers: Sequence[str]) -> dict[str, dict]:
  """Per-layer statistics of an image, computed by spec.memory 'remat'/'tiles'.

  Args:
    params: VGG19 params.
    x: Caffe-space float32[H, W, 3].
    spec: the loss structure (memory, tile, pooling, style_loss).
    content_targets: {layer: float32[h, w, C]} for spec.content_layers, or
      None for no content statistics.
    directions: {layer: float32[C, P]} ('sliced_wasserstein').
    style_layers: the layers that need style statistics.

  Returns:
    {layer: {'content_sq': scalar sum((F - F_c)^2),
             'gram': float32[C, C] F^T F ('gram'),
             'mean', 'cov': float32[C], [C, C] ('mean_cov'),
             'sorted': float32[h w, P] sorted projections
                       ('sliced_wasserstein')}}, the keys that apply.
  """
  content_layers = tuple(content_targets or ())
  wanted = set(content_layers) | set(style_layers)
  layers = tuple(layer for layer in vgg.CONV_LAYERS if layer in wanted)
  image_hw = x.shape[:2]
  precision = jax.lax.Precision.HIGHEST

  if spec.memory == 'remat':
    def summarize(layer, f):
      out = {}
      if layer in content_layers:
        out['content_sq'] = jnp.sum(jnp.square(f - content_targets[layer]))
      if layer in style_layers:
        if spec.style_loss == 'gram':
          out['gram'] = gram_matrix(f)
        elif spec.style_loss == 'mean_cov':
          out['mean'], out['cov'] = feature_mean_cov(f)
        else:
          out['proj'] = jnp.matmul(f.reshape(-1, f.shape[-1]),
                                   directions[layer], precision=precision)
      return out
    stats = vgg.run_network(params, x, layers, spec.pooling,
                            summarize=summarize, remat=True)
    for layer in style_layers:
      if spec.style_loss == 'sliced_wasserstein':
        stats[layer]['sorted'] = jnp.sort(stats[layer].pop('proj'), axis=0)
    return stats

  if spec.memory != 'tiles':
    raise ValueError(f'_statistics needs memory remat or tiles, not {spec.memory!r}')
  side, _, rows, cols = tile_grid(image_hw, layers, spec.tile)
  padded_targets = {}
  for layer in content_layers:
    own = side // 2 ** (vgg.layer_block(layer) - 1)
    t = content_targets[layer]
    padded_targets[layer] = jnp.pad(
        t, ((0, rows * own - t.shape[0]), (0, cols * own - t.shape[1]), (0, 0)))

  def tile_fn(crop, origin, ij):
    def summarize(layer, f):
      part, inside = _tile_interior(layer, layers, spec.tile, image_hw, f, ij)
      own, c = part.shape[0], part.shape[-1]
      out = {}
      if layer in content_layers:
        target = jax.lax.dynamic_slice(padded_targets[layer],
                                       (ij[0] * own, ij[1] * own, 0),
                                       (own, own, c))
        out['content_sq'] = jnp.sum(jnp.where(inside,
                                              jnp.square(part - target), 0.0))
      if layer in style_layers:
        flat = jnp.where(inside, part, 0.0).reshape(-1, c)
        if spec.style_loss == 'gram':
          out['gram'] = jnp.matmul(flat.T, flat, precision=precision)
        elif spec.style_loss == 'mean_cov':
          # Per-tile mean and centred second moment, combined below with
          # Chan et al.'s parallel formula: no E[ff^T] - mu mu^T cancellation.
          count = jnp.sum(inside.astype(f.dtype))
          mean = jnp.sum(flat, axis=0) / jnp.maximum(count, 1.0)
          centred = jnp.where(inside.reshape(-1, 1), flat - mean, 0.0)
          out['count'], out['mean'] = count, mean
          out['m2'] = jnp.matmul(centred.T, centred, precision=precision)
        else:
          out['proj'] = jnp.matmul(flat, directions[layer],
                                   precision=precision).reshape(own, own, -1)
      return out
    return vgg.run_network(params, crop, layers, spec.pooling,
                           summarize=summarize, valid=(origin, image_hw))

  per_tile = _tiled(x, layers, spec.tile, tile_fn, checkpoint=True)
  stats = {}
  for layer, tiles in per_tile.items():
    fh, fw = feature_hw(image_hw, layer)
    out = {}
    if 'content_sq' in tiles:
      out['content_sq'] = jnp.sum(tiles['content_sq'])
    if 'gram' in tiles:
      out['gram'] = jnp.sum(tiles['gram'], axis=0)
    if 'm2' in tiles:
      counts, means = tiles['count'], tiles['mean']
      mean = jnp.sum(counts[:, None] * means, axis=0) / (fh * fw)
      spread = (means - mean) * jnp.sqrt(counts)[:, None]
      out['mean'] = mean
      out['cov'] = (jnp.sum(tiles['m2'], axis=0) + jnp.matmul(
          spread.T, spread, precision=precision)) / (fh * fw)
    if 'proj' in tiles:
      # Back in the whole image's row-major order before the (stable) sort,
      # so exact ties break as in the plain path and the gradient is its own.
      proj = _untile(tiles['proj'], rows, cols, (fh, fw))
      out['sorted'] = jnp.sort(proj.reshape(fh * fw, -1), axis=0)
    stats[layer] = out
  return stats


def tiled_features(params: Mapping, image: jax.Array, layers: Sequence[str],
                   pooling: str = 'max', tile: int = 0) -> dict[str, jax.Array]:
  """`vgg.extract_features` of a float32[H, W, 3] image, computed in tiles.

  The same values (to float32 rounding); the peak memory is one tile's
  activations plus the requested feature maps. No gradient is kept.
  """
  image_hw = image.shape[:2]
  layers = tuple(layers)

  def tile_fn(crop, origin, ij):
    return vgg.run_network(
        params, crop, layers, pooling, valid=(origin, image_hw),
        summarize=lambda layer, f: _tile_interior(layer, layers, tile,
                                                  image_hw, f, ij)[0])

  per_tile = _tiled(image, layers, tile, tile_fn, checkpoint=False)
  _, _, rows, cols = tile_grid(image_hw, layers, tile)
  return {layer: _untile(tiles, rows, cols, feature_hw(image_hw, layer))
          for layer, tiles in per_tile.items()}


def _untile(tiles: jax.Array, rows: int, cols: int, hw: tuple[int, int]
            ) -> jax.Array:
  """Per-tile maps float32[rows * cols, t, t, C] (row-major) -> [h, w, C]."""
  _, own, _, c = tiles.shape
  whole = tiles.reshape(rows, cols, own, own, c).transpose(0, 2, 1, 3, 4)
  return whole.reshape(rows * own, cols * own, c)[:hw[0], :hw[1]]


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


def _directions(key: jax.Array, layer: str, channels: int, spec: LossSpec,
                dtype=jnp.float32) -> jax.Array:
  """Layer `layer`'s sliced-Wasserstein directions float[C, P] (style_targets)."""
  return random_directions(
      jax.random.fold_in(key, vgg.CONV_LAYERS.index(layer)), channels,
      spec.sliced_projections, dtype)


def _tiled_style_targets(params: Mapping, style: jax.Array, spec: LossSpec,
                         key: jax.Array | None, x_hw: tuple[int, int]) -> dict:
  """`style_targets` of one style image, its statistics computed in tiles."""
  if spec.style_loss == 'sliced_wasserstein' and (key is None or x_hw is None):
    raise ValueError("style_loss='sliced_wasserstein' needs a PRNG key and "
                     'the size x_hw of the image being optimised')
  directions = ({layer: _directions(key, layer, vgg.CONV_SHAPES[layer][-1],
                                    spec, style.dtype)
                 for layer in spec.style_layers}
                if spec.style_loss == 'sliced_wasserstein' else None)
  stats = _statistics(params, style, dataclasses.replace(spec, memory='tiles'),
                      None, directions, spec.style_layers)
  targets = {}
  for layer in spec.style_layers:
    s = stats[layer]
    if spec.style_loss == 'gram':
      fh, fw = feature_hw(style.shape[:2], layer)
      normalize = spec.normalization == 'normalized'
      targets[layer] = s['gram'] / (fh * fw) if normalize else s['gram']
    elif spec.style_loss == 'mean_cov':
      targets[layer] = {'mean': s['mean'], 'cov': s['cov']}
    else:
      h, w = feature_hw(x_hw, layer)
      targets[layer] = {'directions': directions[layer],
                        'quantiles': resample_quantiles(s['sorted'], h * w)}
  return targets


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
    targets as described in `style_targets`; with spec.style_levels = L > 1
    also 'style_coarse': a tuple of L - 1 such {layer: target}, level k
    taken from the style images halved k times for an image halved k times.
  """
  if spec.style_loss == 'sliced_wasserstein' and key is None:
    raise ValueError("style_loss='sliced_wasserstein' needs compute_targets("
                     '..., key=...) for its random projections')
  if style_blend is None:
    style_blend = jnp.full((len(styles),), 1.0 / len(styles))
  x_hw = tuple(content.shape[-3:-1])

  def blended_targets(styles, x_hw):
    if spec.memory != 'plain':
      per_style = [_tiled_style_targets(params, style, spec, key, x_hw)
                   for style in styles]
    else:
      per_style = [
          style_targets(vgg.extract_features(params, style, spec.style_layers,
                                             spec.pooling), spec, key=key,
                        x_hw=x_hw)
          for style in styles]
    return _blend_style_targets(per_style, style_blend, spec)

  if spec.memory != 'plain':
    # Images too large for 'plain' are too large for a whole-image forward
    # pass too (it peaked at 3 GiB at 1024 px on CPU): compute them in tiles.
    content_features = tiled_features(params, content, spec.content_layers,
                                      spec.pooling, spec.tile)
  else:
    content_features = vgg.extract_features(params, content,
                                            spec.content_layers, spec.pooling)
  targets = {'content': content_features, 'style': blended_targets(styles, x_hw)}
  if spec.style_levels > 1:
    coarse = []
    for _ in range(1, spec.style_levels):
      styles = [halve(style) for style in styles]
      x_hw = (x_hw[0] // 2, x_hw[1] // 2)
      coarse.append(blended_targets(styles, x_hw))
    targets['style_coarse'] = tuple(coarse)
  return targets


def _losses_from_statistics(x: jax.Array, params: Mapping, targets: Mapping,
                            weights: Mapping[str, jax.Array], spec: LossSpec
                            ) -> tuple[jax.Array, jax.Array]:
  """(content, style) sums of `combined_loss` for memory 'remat' / 'tiles'."""
  norm = spec.normalization
  stats = _statistics(params, x, spec,
                      {layer: targets['content'][layer]
                       for layer in spec.content_layers},
                      _target_directions(targets['style'], spec),
                      spec.style_layers)
  content = 0.0
  for i, layer in enumerate(spec.content_layers):
    sq = stats[layer]['content_sq']
    if norm == 'normalized':
      sq = sq / targets['content'][layer].size
    content = content + weights['content_layers'][i] * sq
  return content, _style_from_statistics(stats, x.shape[:2], targets['style'],
                                         weights, spec)


def _style_from_statistics(stats: Mapping, image_hw: tuple[int, int],
                           style_targets_: Mapping,
                           weights: Mapping[str, jax.Array], spec: LossSpec
                           ) -> jax.Array:
  """The weighted style sum from `_statistics` of an (H, W) image."""
  style = 0.0
  for i, layer in enumerate(spec.style_layers):
    s, target = stats[layer], style_targets_[layer]
    if spec.style_loss == 'gram':
      fh, fw = feature_hw(image_hw, layer)
      loss = _gram_loss(s['gram'], fh * fw, target, spec.normalization)
    elif spec.style_loss == 'mean_cov':
      loss = _mean_cov_loss(s['mean'], s['cov'], target, spec.normalization)
    else:
      loss = _sliced_loss(s['sorted'], target, spec.normalization)
    style = style + weights['style_layers'][i] * loss
  return style


def _style_only(x: jax.Array, params: Mapping, style_targets_: Mapping,
                weights: Mapping[str, jax.Array], spec: LossSpec) -> jax.Array:
  """The weighted style sum of one pyramid level x float32[h, w, 3]."""
  if spec.memory == 'plain':
    features = vgg.extract_features(params, x, spec.style_layers, spec.pooling)
    return _style_from_features(features, style_targets_, weights, spec)
  stats = _statistics(params, x, spec, None,
                      _target_directions(style_targets_, spec),
                      spec.style_layers)
  return _style_from_statistics(stats, x.shape[:2], style_targets_, weights,
                                spec)


def _style_from_features(features: Mapping[str, jax.Array],
                         style_targets_: Mapping,
                         weights: Mapping[str, jax.Array], spec: LossSpec
                         ) -> jax.Array:
  """The weighted style sum from whole-image features {layer: [h, w, C]}."""
  layer_loss = _STYLE_LAYER_LOSSES[spec.style_loss]
  return sum(weights['style_layers'][i] *
             layer_loss(features[layer], style_targets_[layer],
                        spec.normalization)
             for i, layer in enumerate(spec.style_layers))


def _target_directions(style_targets_: Mapping, spec: LossSpec
                       ) -> dict[str, jax.Array] | None:
  """{layer: float32[C, P]} of sliced-Wasserstein targets; None otherwise."""
  if spec.style_loss != 'sliced_wasserstein':
    return None
  return {layer: style_targets_[layer]['directions']
          for layer in spec.style_layers}


def combined_loss(x: jax.Array, params: Mapping, targets: Mapping,
                  weights: Mapping[str, jax.Array], spec: LossSpec
                  ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The weighted total loss of an image and its terms.

  Args:
    x: the image being optimised, Caffe space float32[H, W, 3].
    params: VGG19 params (traced: never closed over).
    targets: from `compute_targets` with the same spec.
    weights: traced scalars 'content', 'style', 'tv', 'style_pyramid' (the
      weight of each coarser pyramid level, the picture's being 1; read only
      when spec.style_levels > 1) and the per-layer vectors
      'content_layers' float32[len(spec.content_layers)] and 'style_layers'
      float32[len(spec.style_layers)].
    spec: static loss structure.

  Returns:
    (total, {'content', 'style', 'tv', 'total'}): each term already multiplied
    by its weight, so the terms sum to the total.
  """
  norm = spec.normalization
  if spec.memory == 'plain':
    features = vgg.extract_features(params, x, spec.layers, spec.pooling)
    content = sum(weights['content_layers'][i] *
                  content_loss(features[layer], targets['content'][layer], norm)
                  for i, layer in enumerate(spec.content_layers))
    style = _style_from_features(features, targets['style'], weights, spec)
  else:
    content, style = _losses_from_statistics(x, params, targets, weights, spec)
  # The style pyramid: each level's loss is a mean like the picture's, so
  # weight 1 adds the levels as equals. Every coarser level gets the same
  # weight, so the coarsest one (whose strokes set the look) weighs the same
  # at every image_size; a power per level would fade it at large sizes.
  level = x
  for k in range(spec.style_levels - 1):
    level = halve(level)
    style = style + weights['style_pyramid'] * _style_only(
        level, params, targets['style_coarse'][k], weights, spec)
  terms = {
      'content': weights['content'] * content,
      'style': weights['style'] * style,
      'tv': weights['tv'] * total_variation_loss(x, norm),
  }
  total = terms['content'] + terms['style'] + terms['tv']
  return total, {**terms, 'total': total}
