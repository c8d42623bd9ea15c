"""Spatial control as loss terms: a style per region, and regions kept as the photo.

Gatys et al. 2017 (*Controlling Perceptual Factors in Neural Style
Transfer*, arXiv 1611.07865, section 4). The picture's label image gives
soft masks T float32[H, W, R] (`nst_jax.regions`); R counts the *styled*
regions only (a region kept as the photo has no style statistic).

* `GuidedStyle` (key 'style') takes the place of the style loss
  (`LossSpec(extra_terms=(GuidedStyle(...),))`: an extra term with the key of
  a base term replaces it), so `weights['style']`, `weights['style_layers']`,
  the style pyramid and sweeps of style_weight act on it unchanged. Per layer
  and region r, the chosen statistic ('gram', 'mean_cov' or
  'sliced_wasserstein', see terms.py) is taken over the region's positions
  only, with the masks at the layer's size (`layer_masks`) as weights:
    gram: G_r = (F * T_r)^T (F * T_r) / sum(T_r^2) (`guided.guided_gram`),
    mean_cov: the mean and covariance of the positions weighted by T_r,
    sliced_wasserstein: the weighted quantile functions of the projections
      (`guided.weighted_quantiles`, `guided.guided_sliced_distance`),
  each a per-position average like the 'normalized' losses, against the
  target of the region's source: a style image whole, or one region of its
  own label image (sky to sky). The layer's loss is
    sum_r share_r * distance_r,    share_r = sum(T_r) / n,
  the distances of terms.py ('seed' divides them by 4, as for mean_cov and
  sliced_wasserstein). Weighting by the share keeps each region's
  style/content balance that of a whole-image run (the content term, too,
  sums over the region's positions): a region's weight does not depend on
  how many other regions there are.
* `PhotoHold` (key 'photo'): mean over the pixels and channels of
  M (x - p)^2, with p the photo (Caffe space) and M float32[H, W, 1] the
  masks of the regions kept as the photo (config.region_photo_weight).

The masks of a layer are a per-position map (`Term.maps`), so every memory
path hands `sums` the guide of the same positions as the features: the
terms are exact on 'plain', 'remat' and 'tiles'. Their targets (reference
'') come from `region_targets`, which the caller puts in targets['style']
(and 'style_coarse') and targets['photo'].
"""

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from nst_jax import guided
from nst_jax import vgg
from nst_jax.losses import evaluate
from nst_jax.losses import formulas
from nst_jax.losses import terms as terms_lib
from nst_jax.losses import tiling

STATISTICS = ('gram', 'mean_cov', 'sliced_wasserstein')


def layer_masks(masks: jax.Array, layers: Sequence[str]
                ) -> dict[str, jax.Array]:
  """{layer: float32[h, w, R]}: the masks float32[H, W, R] at each layer.

  Area average: halved (`formulas.halve`, the mean of each 2x2 block) once
  per pool before the layer's block, the same floor-halving as VGG's pools,
  so the mask of layer l has exactly `tiling.feature_hw((H, W), l)`.

  Why not the paper's eroded 'inside' masks (only the positions whose
  receptive field lies wholly inside a region): (1) the area-averaged masks
  still sum to 1 at every position, so every position is counted in some
  region's statistics; eroded masks leave the border positions in none, and
  there the picture drifts free of any style, a seam; (2) receptive fields
  are large (block4_conv1 ~90 px, block5_conv1 ~200 px), so erosion would
  empty every region narrower than that at the deep layers; (3) soft edges
  (anti-aliasing, `regions.feather_masks`) carry through as fractional
  weights. The cost, which the paper notes for its 'simple' variant, is that
  positions straddling a border mix both regions' statistics, a blur of the
  boundary of about one receptive field.
  """
  masks = jnp.asarray(masks, jnp.float32)
  by_block = {1: masks}
  for block in range(2, 6):
    by_block[block] = formulas.halve(by_block[block - 1])
  return {layer: by_block[vgg.layer_block(layer)] for layer in layers}


def _tiny(dtype) -> float:
  return jnp.finfo(dtype).tiny


@dataclasses.dataclass(frozen=True)
class GuidedStyle(terms_lib.Term):
  """The style statistic per region of the picture (module docstring).

  Fields (static): layers and normalization as every term; `style_loss`
  one of STATISTICS (config.style_loss); `projections` P for
  'sliced_wasserstein'.

  Target per layer (`region_targets`): 'guide' float32[h, w, R] (a map),
  'share' float32[R], and the statistic's, with a leading region axis R:
  'gram' float32[R, C, C]; 'mean' float32[R, C] and 'cov' [R, C, C];
  'directions' float32[C, P] and 'quantiles' float32[R, h w, P].
  """
  style_loss: str = 'gram'
  projections: int = 64

  key = 'style'
  reference = ''
  pyramid = True
  maps = ('guide',)
  gathered = ('proj',)

  def __post_init__(self):
    if self.style_loss not in STATISTICS:
      raise ValueError(f'style_loss={self.style_loss!r}: use one of '
                       f'{list(STATISTICS)}')

  def sums(self, layer, f, inside, target):
    guide = target['guide']
    if self.style_loss == 'gram':
      gram, norm = guided.guided_gram_sums(f, guide)
      return {'gram': gram, 'norm': norm}
    if self.style_loss == 'mean_cov':
      # Moments about the target's mean, as MeanCov: plain sums over
      # positions that tiles add; T_r is 0 outside the image.
      flat = f.reshape(-1, f.shape[-1])
      weights = guide.reshape(-1, guide.shape[-1]).T  # [R, n]
      d = flat[None] - target['mean'][:, None]  # [R, n, C]
      weighted = weights[:, :, None] * d
      return {'weight': jnp.sum(weights, axis=1),
              'first': jnp.sum(weighted, axis=1),
              'second': jnp.einsum('rnc,rnd->rcd', weighted, d,
                                   precision=formulas.HIGHEST)}
    h, w, c = f.shape
    proj = jnp.matmul(f.reshape(h * w, c), target['directions'],
                      precision=formulas.HIGHEST)
    return {'proj': proj.reshape(h, w, -1)}

  def finish(self, layer, sums, positions, target):
    if self.style_loss == 'gram':
      norm = jnp.maximum(sums['norm'], _tiny(sums['gram'].dtype))
      return {'gram': sums['gram'] / norm[:, None, None]}
    if self.style_loss == 'mean_cov':
      weight = jnp.maximum(sums['weight'], _tiny(sums['first'].dtype))
      offset = sums['first'] / weight[:, None]
      return {'mean': target['mean'] + offset,
              'cov': sums['second'] / weight[:, None, None]
                     - offset[:, :, None] * offset[:, None, :]}
    guide = target['guide']
    # Row-major order, as SlicedWasserstein: ties break alike on every path.
    values, weights = guided.sort_with_weights(
        sums['proj'].reshape(positions, -1),
        guide.reshape(positions, guide.shape[-1]))
    return {'sorted': values, 'weights': weights}

  def statistic(self, layer, f, target, reference=False):
    # A whole map is at hand: mean_cov centres it on its own means.
    if self.style_loss == 'mean_cov':
      mean, cov = guided.guided_mean_cov(f, target['guide'])
      return {'mean': mean, 'cov': cov}
    h, w, _ = f.shape
    return self.finish(layer, self.sums(layer, f, 1.0, target), h * w, target)

  def region_distances(self, statistic, target) -> jax.Array:
    """float32[R]: each region's distance (normalised form)."""
    if self.style_loss == 'gram':
      return jnp.mean(jnp.square(statistic['gram'] - target['gram']),
                      axis=(1, 2))
    if self.style_loss == 'mean_cov':
      mean_weight = 2.0 * jnp.mean(jnp.square(target['mean']), axis=1)
      return (jnp.mean(jnp.square(statistic['cov'] - target['cov']),
                       axis=(1, 2))
              + mean_weight * jnp.mean(jnp.square(statistic['mean']
                                                  - target['mean']), axis=1))
    quantiles = target['quantiles']
    scale = jnp.mean(jnp.square(quantiles), axis=(1, 2))
    per_region = jax.vmap(guided.guided_sliced_distance, in_axes=(None, 0, 0))
    return per_region(statistic['sorted'], statistic['weights'],
                      quantiles) * scale

  def distance(self, layer, statistic, target, positions):
    loss = jnp.sum(target['share'] * self.region_distances(statistic, target))
    return loss if self.normalization == 'normalized' else loss / 4.0


@dataclasses.dataclass(frozen=True)
class PhotoHold(terms_lib.Term):
  """Pixels held to the photo inside the regions kept as the photo.

  Target (`region_targets`, targets['photo']): {'photo': float32[H, W, 3]
  the photo as the network sees it (Caffe space), 'mask': float32[H, W, 1]
  the kept regions' masks}. The loss is mean(mask * (x - photo)^2) over
  pixels and channels, Caffe units squared, under either normalization.
  """
  key = 'photo'

  def loss(self, x, statistics, targets, layer_weights):
    return jnp.mean(targets['mask'] * jnp.square(x - targets['photo']))


def _reference_statistics(params: Mapping, image: jax.Array,
                          guide: jax.Array, term: GuidedStyle,
                          spec: evaluate.LossSpec, key: jax.Array | None
                          ) -> dict:
  """{layer: statistic with a leading axis Q} of a style image float32[h, w,
  3] (Caffe) under its own masks float32[h, w, Q] (ones[.., 1]: whole)."""
  guides = layer_masks(guide, term.layers)
  prepared = {}
  for layer in term.layers:
    channels = vgg.CONV_SHAPES[layer][-1]
    prepared[layer] = {'guide': guides[layer]}
    if term.style_loss == 'mean_cov':
      prepared[layer]['mean'] = jnp.zeros((guide.shape[-1], channels),
                                          image.dtype)
    elif term.style_loss == 'sliced_wasserstein':
      if key is None:
        raise ValueError("style_loss='sliced_wasserstein' needs a key for "
                         'its random projections')
      prepared[layer]['directions'] = formulas.random_directions(
          jax.random.fold_in(key, vgg.CONV_LAYERS.index(layer)), channels,
          term.projections, image.dtype)
  # Images too large for 'plain' run in tiles (as evaluate's references).
  memory = 'plain' if spec.memory == 'plain' else 'tiles'
  # In tiles mean_cov takes two passes, as MeanCov: the means, then the
  # moments about them.
  passes = 2 if memory == 'tiles' and term.style_loss == 'mean_cov' else 1
  targets = prepared
  for _ in range(passes):
    stats = evaluate._statistics(  # pylint: disable=protected-access
        params, image, [term], {term.key: targets}, spec, memory,
        reference=True)[term.key]
    targets = {layer: {**prepared[layer], **stats[layer]}
               for layer in term.layers}
  return targets


def _level_target(term: GuidedStyle, masks: jax.Array,
                  references: Sequence[dict],
                  sources: Sequence[tuple[int, int]]) -> dict:
  """{layer: target} at one level: x's masks [H, W, R], the styles'
  reference statistics, and each region's (style, style region)."""
  guides = layer_masks(masks, term.layers)
  out = {}
  for layer in term.layers:
    guide = guides[layer]
    h, w = guide.shape[:2]
    target = {'guide': guide,
              'share': jnp.sum(guide, axis=(0, 1)) / (h * w)}
    picked = [references[s][layer] for s, _ in sources]
    if term.style_loss == 'sliced_wasserstein':
      # Every style's projections share the layer's directions.
      target['directions'] = picked[0]['directions']
      target['quantiles'] = jnp.stack([
          guided.weighted_quantiles(p['sorted'], p['weights'][q], h * w)
          for p, (_, q) in zip(picked, sources)])
    else:
      names = ('gram',) if term.style_loss == 'gram' else ('mean', 'cov')
      for name in names:
        target[name] = jnp.stack([p[name][q]
                                  for p, (_, q) in zip(picked, sources)])
    out[layer] = target
  return out


def region_targets(params: Mapping, term: GuidedStyle,
                   spec: evaluate.LossSpec, masks: jax.Array,
                   styles: Sequence[jax.Array],
                   style_masks: Sequence[jax.Array],
                   sources: Sequence[tuple[int, int]],
                   key: jax.Array | None = None) -> dict:
  """targets['style'] (and 'style_coarse') of a GuidedStyle.

  Args:
    params: VGG19 params.
    term: the GuidedStyle of `spec.extra_terms`.
    spec: the loss structure (memory path, tile, style_levels).
    masks: float32[H, W, R] the styled regions of the picture at its size
      (R >= 1), after feathering.
    styles: Caffe-space style images float32[h_i, w_i, 3].
    style_masks: per style, float32[h_i, w_i, Q_i] its own regions
      (float32[h_i, w_i, 1] of ones: the painting whole).
    sources: static, per region r of `masks`, (style index, region of that
      style's masks).
    key: PRNG key of the projections ('sliced_wasserstein').

  Returns:
    {'style': {layer: target}} and, with spec.style_levels = L > 1,
    'style_coarse': L - 1 such, level k from the picture's masks, the style
    images and their masks halved k times.
  """
  levels = []
  for k in range(spec.style_levels):
    if k:
      masks = formulas.halve(masks)
      styles = [formulas.halve(s) for s in styles]
      style_masks = [formulas.halve(m) for m in style_masks]
    used = sorted({s for s, _ in sources})
    references = {s: _reference_statistics(params, styles[s], style_masks[s],
                                           term, spec, key) for s in used}
    levels.append(_level_target(term, masks, references, sources))
  out = {'style': levels[0]}
  if len(levels) > 1:
    out['style_coarse'] = tuple(levels[1:])
  return out


def photo_target(photo: jax.Array, kept: jax.Array) -> dict:
  """targets['photo'] of PhotoHold: photo float32[H, W, 3] (Caffe) and the
  kept regions' summed masks float32[H, W, 1]."""
  return {'photo': photo, 'mask': kept}
