"""One evaluator for every term: targets and the combined loss on any path.

`compute_targets` takes each term's target from the reference images, and
`combined_loss` the weighted terms of the image x being optimised, for the
terms of a `LossSpec` (see terms.py), on the memory path it names and over
the style pyramid's levels. Both go through `_statistics`, the only place
that knows the paths: per layer, a term's statistic of a whole feature map
('plain'; 'remat' the same inside each VGG block's checkpoint), or its sums
over the tiles of memory='tiles' (see tiling.py), added (or gathered) and
finished. So every term is exact on every path by construction.
"""

import dataclasses
import functools
import operator
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from nst_jax import vgg
from nst_jax.losses import formulas
from nst_jax.losses import terms as terms_lib
from nst_jax.losses import tiling

NORMALIZATIONS = ('seed', 'normalized')
STYLE_LOSSES = tuple(terms_lib.STYLE_TERMS)
MEMORY_PATHS = ('plain', 'remat', 'tiles')


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """The static structure of the combined loss (hashable: a jit static arg).

  Attributes:
    content_layers: Keras names of the content layers.
    style_layers: Keras names of the style layers.
    pooling: 'max' or 'avg' pooling in VGG19.
    normalization: one of NORMALIZATIONS (see terms.py).
    style_loss: the style term, a key of terms.STYLE_TERMS (STYLE_LOSSES).
    sliced_projections: random directions per layer for 'sliced_wasserstein'.
    memory: how the gradient's memory is bounded, one of MEMORY_PATHS; every
      path gives the same loss and gradient (to float32 rounding):
      'plain' keeps every activation for the backward pass (fastest);
      'remat' checkpoints each VGG block (keeps block inputs and per-layer
      statistics, recomputes the convolutions: about 1.3x the time);
      'tiles' runs the network on square tiles of `tile` px with a halo
      (`tile_halo`) and adds per-layer statistics over them; the backward
      pass recomputes one tile at a time, so memory follows the tile.
    tile: tile side for 'tiles', px, rounded up to a multiple of
      the deepest pool's stride; 0 means DEFAULT_TILE.
    style_levels: levels of the style pyramid (1 = the picture alone): the
      style term is also taken on the picture halved 1 .. L - 1 times
      (`formulas.halve`) against the style images halved alike. VGG19's
      receptive fields are fixed in pixels, so at 1024 px the loss alone
      sees only strokes an eighth of the size it sees at 256 px; the coarse
      levels keep the large strokes, so `image_size` changes the resolution
      rather than the look (docs/defaults.md, Across sizes). See `style_pyramid_levels`.
    extra_terms: terms added to content, style and TV (terms.Term records,
      each with its own key, weight and targets); one with the key of one of
      those three takes its place (guided_style.GuidedStyle, key 'style':
      the style loss per region).
    precision: the VGG convolutions' arithmetic (vgg.PRECISIONS), for the
      image and the targets alike; statistics and losses are float32.
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
  extra_terms: tuple[terms_lib.Term, ...] = ()
  precision: str = 'float32'

  def __post_init__(self):
    if self.style_loss not in terms_lib.STYLE_TERMS:
      raise ValueError(f'style_loss={self.style_loss!r}: use one of '
                       f'{list(terms_lib.STYLE_TERMS)}')
    if self.memory not in MEMORY_PATHS:
      raise ValueError(f'memory={self.memory!r}: use one of {list(MEMORY_PATHS)}')
    if self.tile < 0:
      raise ValueError(f'tile={self.tile}: use 0 (the default) or a side in px')
    keys = [term.key for term in self.terms]
    if len(set(keys)) < len(keys):
      raise ValueError(f'two terms share a key: {keys}')

  @property
  def terms(self) -> tuple[terms_lib.Term, ...]:
    """The records of the loss: content, the style loss, TV, extra_terms.

    An extra term with the key of one of the first three replaces it.
    """
    base = (terms_lib.Content.from_spec(self),
            terms_lib.STYLE_TERMS[self.style_loss].from_spec(self),
            terms_lib.TotalVariation.from_spec(self))
    replaced = {term.key for term in self.extra_terms}
    return tuple(t for t in base if t.key not in replaced) + self.extra_terms

  @property
  def layers(self) -> tuple[str, ...]:
    """Every layer the loss reads, in network order."""
    return _network_order(self.terms)

  def relative_cost(self, hw: tuple[int, int]) -> float:
    """Time per pixel of one evaluation on this memory path, plain = 1.

    A model for the run's ETA across scales, not a measurement: 'remat'
    repeats the forward pass (about a third of forward + backward), and
    'tiles' repeats it too, on crops that include the halo. On the 2-core
    CPU at 2048 px this gives 2.3 for 512 px tiles, measured 2.1 (docs/memory.md).
    """
    if self.memory == 'plain':
      return 1.0
    if self.memory == 'remat':
      return 4 / 3
    side, halo, rows, cols = tiling.tile_grid(hw, self.layers, self.tile)
    return 4 / 3 * rows * cols * (side + 2 * halo) ** 2 / (hw[0] * hw[1])

  def describe_memory(self, hw: tuple[int, int]) -> str:
    """The memory path for an (H, W) image, in words, for the run's log."""
    if self.memory == 'plain':
      return 'plain (the whole network)'
    if self.memory == 'remat':
      return 'remat (activations recomputed per VGG block)'
    side, halo, rows, cols = tiling.tile_grid(hw, self.layers, self.tile)
    return f'tiles ({rows}x{cols} tiles of {side} px, halo {halo} px)'


def _network_order(terms: Sequence[terms_lib.Term]) -> tuple[str, ...]:
  wanted = {layer for term in terms for layer in term.layers}
  return tuple(layer for layer in vgg.CONV_LAYERS if layer in wanted)


def _statistics(params: Mapping, image: jax.Array,
                terms: Sequence[terms_lib.Term], targets: Mapping,
                spec: LossSpec, memory: str, reference: bool = False
                ) -> dict[str, dict]:
  """{key: {layer: statistic}} of the terms' layers of an image.

  Args:
    params: VGG19 params.
    image: Caffe-space float32[H, W, 3].
    terms: the terms (with layers) to compute.
    targets: {key: {layer: target}} for each term (a reference image's
      prepared targets, with `reference`).
    spec: pooling and tile.
    memory: 'plain', 'remat' or 'tiles'.
    reference: take `reference_sums` (of a reference image).
  """
  layers = _network_order(terms)
  image_hw = image.shape[:2]
  by_layer = {layer: [t for t in terms if layer in t.layers]
              for layer in layers}

  def summarize(layer, f):
    return {t.key: t.statistic(layer, f, targets[t.key][layer], reference)
            for t in by_layer[layer]}

  if memory != 'tiles':
    if memory == 'plain':
      # The statistics after the network, as autodiff has always seen them:
      # the gradient adds its parts in the same order, to the bit.
      stats = {layer: summarize(layer, f) for layer, f in
               vgg.extract_features(params, image, layers, spec.pooling,
                                    spec.precision).items()}
    else:
      stats = vgg.run_network(params, image, layers, spec.pooling,
                              summarize=summarize, remat=True,
                              precision=spec.precision)
    return {t.key: {layer: stats[layer][t.key] for layer in t.layers}
            for t in terms}

  grid = functools.partial(tiling.pad_map, layers=layers, tile=spec.tile,
                           image_hw=image_hw)
  # The per-position maps of each target (a reference's too, if it has
  # them), padded once; each tile gets its own part of them below.
  padded = {(t.key, layer): {name: grid(targets[t.key][layer][name], layer)
                             for name in t.maps
                             if name in targets[t.key][layer]}
            for t in terms for layer in t.layers}

  def tile_fn(crop, origin, ij):
    def summarize(layer, f):
      part, inside = tiling.interior(layer, layers, spec.tile, image_hw, f, ij)
      f = jnp.where(inside, part, 0.0)
      out = {}
      for t in by_layer[layer]:
        target = targets[t.key][layer]
        cut = {name: tiling.own_part(values, layer, layers, spec.tile,
                                     image_hw, ij)
               for name, values in padded[t.key, layer].items()}
        sums = t.reference_sums if reference else t.sums
        out[t.key] = sums(layer, f, inside.astype(f.dtype),
                          {**target, **cut} if cut else target)
      return out
    return vgg.run_network(params, crop, layers, spec.pooling,
                           summarize=summarize, valid=(origin, image_hw),
                           precision=spec.precision)

  per_tile = tiling.map_tiles(image, layers, spec.tile, tile_fn,
                              checkpoint=True)
  _, _, rows, cols = tiling.tile_grid(image_hw, layers, spec.tile)
  stats = {}
  for t in terms:
    stats[t.key] = {}
    for layer in t.layers:
      hw = tiling.feature_hw(image_hw, layer)
      sums = {name: tiling.untile(values, rows, cols, hw)
              if name in t.gathered else jnp.sum(values, axis=0)
              for name, values in per_tile[layer][t.key].items()}
      stats[t.key][layer] = t.finish(layer, sums, hw[0] * hw[1],
                                     targets[t.key][layer])
  return stats


def _reference_targets(params: Mapping, image: jax.Array,
                       term: terms_lib.Term, spec: LossSpec,
                       key: jax.Array | None, x_hw: tuple[int, int]) -> dict:
  """{layer: target} of `term` from one reference image float32[h, w, 3].

  Images too large for 'plain' are too large for a whole-image forward pass
  too (it peaked at 3 GiB at 1024 px on CPU): off 'plain' they run in tiles.
  """
  memory = 'plain' if spec.memory == 'plain' else 'tiles'
  prepared = {layer: term.prepare(layer, vgg.CONV_SHAPES[layer][-1], key,
                                  image.dtype) for layer in term.layers}
  targets = prepared
  for _ in range(term.reference_passes if memory == 'tiles' else 1):
    stats = _statistics(params, image, [term], {term.key: targets}, spec,
                        memory, reference=True)[term.key]
    targets = {layer: term.target(layer, stats[layer], prepared[layer], x_hw)
               for layer in term.layers}
  return targets


def compute_targets(params: Mapping, content: jax.Array,
                    styles: jax.Array | list, style_blend: jax.Array | None,
                    spec: LossSpec, *, key: jax.Array | None = None) -> dict:
  """The terms' targets from the reference images, computed once per run.

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
    {key: {layer: target}} for the terms with a reference ('content' and
    'style'; see each term's docstring for its targets); with
    spec.style_levels = L > 1 also, per pyramid term, key + '_coarse': a
    tuple of L - 1 such {layer: target}, level k taken from the style images
    halved k times for an image halved k times.
  """
  if style_blend is None:
    style_blend = jnp.full((len(styles),), 1.0 / len(styles))
  x_hw = tuple(content.shape[-3:-1])
  targets = {}
  for term in spec.terms:
    if term.reference == 'content':
      targets[term.key] = _reference_targets(params, content, term, spec, key,
                                             x_hw)
    elif term.reference == 'styles':
      levels, level_styles, level_hw = [], list(styles), x_hw
      for k in range(spec.style_levels if term.pyramid else 1):
        if k:
          level_styles = [formulas.halve(style) for style in level_styles]
          level_hw = (level_hw[0] // 2, level_hw[1] // 2)
        per_style = [_reference_targets(params, style, term, spec, key,
                                        level_hw) for style in level_styles]
        levels.append({layer: term.blend([t[layer] for t in per_style],
                                         style_blend)
                       for layer in term.layers})
      targets[term.key] = levels[0]
      if len(levels) > 1:
        targets[term.key + '_coarse'] = tuple(levels[1:])
  return targets


def _level_losses(x: jax.Array, params: Mapping, targets: Mapping,
                  weights: Mapping[str, jax.Array], spec: LossSpec,
                  terms: Sequence[terms_lib.Term]) -> dict[str, jax.Array]:
  """{key: unweighted term} of terms with layers at one level x [h, w, 3]."""
  stats = _statistics(params, x, terms, targets, spec, spec.memory)
  return {t.key: t.loss(x, stats[t.key], targets[t.key],
                        weights[t.key + '_layers'])
          for t in terms}


def combined_loss(x: jax.Array, params: Mapping, targets: Mapping,
                  weights: Mapping[str, jax.Array], spec: LossSpec
                  ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The weighted total loss of an image and its terms.

  Args:
    x: the image being optimised, Caffe space float32[H, W, 3].
    params: VGG19 params (traced: never closed over).
    targets: from `compute_targets` with the same spec (plus, for a term
      whose reference is '', targets[key]).
    weights: traced scalars, one per term key ('content', 'style', 'tv', and
      'style_pyramid': the weight of each coarser pyramid level, the
      picture's being 1; read only when spec.style_levels > 1), and per
      term with layers the vector key + '_layers' ('content_layers'
      float32[len(spec.content_layers)], 'style_layers' float32[len(
      spec.style_layers)]).
    spec: static loss structure.

  Returns:
    (total, {key: term, 'total': total}): each term already multiplied by its
    weight ('content', 'style', 'tv' and the extra terms' keys).
  """
  by_layers = [t for t in spec.terms if t.layers]
  values = _level_losses(x, params, targets, weights, spec, by_layers)
  # The style pyramid: each level's loss is a mean like the picture's, so
  # weight 1 adds the levels as equals. Every coarser level gets the same
  # weight, so the coarsest one (whose strokes set the look) weighs the same
  # at every image_size; a power per level would fade it at large sizes.
  pyramid = [t for t in by_layers if t.pyramid]
  level = x
  for k in range(spec.style_levels - 1):
    level = formulas.halve(level)
    coarse = {t.key: targets[t.key + '_coarse'][k] for t in pyramid}
    for name, value in _level_losses(level, params, coarse, weights, spec,
                                     pyramid).items():
      values[name] = values[name] + weights['style_pyramid'] * value
  for t in spec.terms:  # the pixel terms (and layer terms without layers)
    if not t.layers:
      values[t.key] = t.loss(x, {}, targets.get(t.key), None)
  terms = {t.key: weights[t.key] * values[t.key] for t in spec.terms}
  total = functools.reduce(operator.add, terms.values())
  return total, {**terms, 'total': total}
