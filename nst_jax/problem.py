"""The optimisation problem of M members at one scale, on the device.

`build_problem` loads the images a group of members needs, applies the colour
control, computes the content and style targets once per distinct
(content, seed) and stacks what differs between members along a leading
member axis M: the start images float32[M, H, W, 3] (Caffe space), the loss
weights ('content' float32[M], 'style_layers' float32[M, L], ...), and the
targets that differ (`Problem.per_member`; the rest is `Problem.shared`).
A single run is the case M = 1.
"""

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import color
from nst_jax import image as image_lib
from nst_jax import losses
from nst_jax import phases
from nst_jax import regions
from nst_jax import spec as spec_lib
from nst_jax import vgg

Log = Callable[[str], Any]


def prng_keys(seed: int) -> dict[str, jax.Array]:
  """One PRNG key per purpose, split from `seed`: 'init' (noise start image)
  and 'projections' (sliced-Wasserstein directions)."""
  init, projections = jax.random.split(jax.random.key(seed), 2)
  return {'init': init, 'projections': projections}


def initial_image(mode_or_path: str | Path, content: jax.Array,
                  style: jax.Array, key: jax.Array) -> jax.Array:
  """The starting image, RGB float32[H, W, 3] in [0, 1] of the content's size.

  Args:
    mode_or_path: 'content', 'noise' (uniform white noise from `key`), 'style'
      (the first style image stretched to the content's size) or a Path.
    content: RGB content image float32[H, W, 3] in [0, 1].
    style: RGB style image float32[h, w, 3] in [0, 1].
    key: PRNG key for the noise.
  """
  if isinstance(mode_or_path, Path):
    return jax.image.resize(jnp.asarray(image_lib.load_image(mode_or_path)),
                            content.shape, 'lanczos3').clip(0.0, 1.0)
  if mode_or_path == 'noise':
    return jax.random.uniform(key, content.shape, jnp.float32)
  if mode_or_path == 'style':
    return jax.image.resize(style, content.shape, 'lanczos3').clip(0.0, 1.0)
  return content


@dataclasses.dataclass
class Problem:
  """What the optimiser needs for M members at one scale (see `build_problem`).

  Attributes:
    params: prepared VGG19 params (`vgg.prepare_params`), shared.
    shared: the targets every member shares: some of 'content', 'style' (as
      in `losses.compute_targets`).
    per_member: the other targets, each leaf with a leading axis M.
    weights: traced loss weights (see `losses.combined_loss`), leading axis M.
    x0: start images, Caffe space float32[M, H, W, 3].
    content_rgb: each member's content, RGB float32[M, H, W, 3] in [0, 1].
    preserve_color: '', 'luminance' or 'histogram' (see `output_rgb`).
  """
  params: dict
  shared: dict
  per_member: dict
  weights: dict
  x0: jax.Array
  content_rgb: jax.Array
  preserve_color: str = ''

  def output_rgb(self, x: jax.Array) -> np.ndarray:
    """The pictures of optimised images x[M]: RGB float32[M, H, W, 3] in [0, 1].

    In 'luminance' mode x carries only luminance; each picture takes its
    chroma from its content (Gatys et al. 2017).
    """
    rgb = vgg.deprocess(x)
    if self.preserve_color == 'luminance':
      rgb = jax.vmap(color.recombine_luminance)(rgb, self.content_rgb)
    return np.asarray(jnp.clip(rgb, 0.0, 1.0))


def _stack(trees: Sequence[Any]) -> Any:
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


_compute_targets = jax.jit(losses.compute_targets, static_argnums=(4,))


_region_style_targets = jax.jit(losses.region_targets,
                                static_argnums=(1, 2, 6))


def _region_targets(plan: regions.Plan, params: dict,
                    loss_spec: losses.LossSpec, masks: np.ndarray,
                    styles: Sequence[jax.Array],
                    style_names: Sequence[str], key: jax.Array,
                    log: Log | None) -> dict:
  """targets['style'] ('style_coarse') of the regions' GuidedStyle for a
  picture whose regions are `masks` (`plan.masks` at its size): they depend
  on the style images (RGB in [0, 1]), the masks and the projections' key,
  not on the photo."""
  if log is not None:
    log(regions.describe(plan.content, masks.mean(axis=(0, 1)), plan.mapping,
                         style_names, plan.style_maps))
  term = next(t for t in loss_spec.terms if isinstance(t, losses.GuidedStyle))
  styled = [m.region for m in plan.styled]
  style_masks = [jnp.asarray(plan.style_masks(i, s.shape[:2]))
                 for i, s in enumerate(styles)]
  out = _region_style_targets(
      params, term, loss_spec, jnp.asarray(masks[..., styled]),
      [vgg.preprocess(s) for s in styles], style_masks, plan.sources(), key)
  return out


def _photo_target(plan: regions.Plan, masks: np.ndarray, seen: jax.Array
                  ) -> dict:
  """targets['photo'] of PhotoHold: `seen` (the content as the network sees
  it, RGB in [0, 1]) inside the regions kept as the photo (`masks`:
  `plan.masks` at its size)."""
  kept = masks[..., list(plan.kept)].sum(axis=-1, keepdims=True)
  return losses.photo_target(vgg.preprocess(seen), jnp.asarray(kept))


def _photo_list(paths: Sequence[Path]) -> str:
  """The photos of a call for the log: all of up to three, else the first
  and last and their count (a clip's pass has hundreds of frames)."""
  if len(paths) <= 3:
    return ', '.join(map(str, paths))
  return f'{paths[0]}, ..., {paths[-1]} ({len(paths)} photos)'


def build_problem(spec: spec_lib.RunSpec, members: Sequence[spec_lib.Member],
                  scale: int, params: dict, log: Log = print,
                  start_rgb: jax.Array | None = None,
                  extra_targets: dict | None = None) -> Problem:
  """Loads the images of `members` at scale index `scale` and their targets.

  Args:
    spec: the checked run.
    members: members whose content has one size at this scale.
    scale: index into each member's `scale_hws`.
    params: prepared VGG19 params.
    log: receives a line about the images.
    start_rgb: RGB float32[M, h, w, 3] in [0, 1] to start from instead of
      config.init, resized to this scale (coarse-to-fine passes the last
      scale's results).
    extra_targets: more per-member targets {key: leaves float32[M, ...]}
      for the loss spec's extra terms (e.g. 'temporal').
  """
  hw = members[0].scale_hws[scale]
  style_rgbs = [jnp.asarray(image_lib.load_image(
      p, long_side=spec_lib.style_long_side(spec.style_scale, hw)))
      for p in spec.style_paths]
  loaded: dict[Path, tuple] = {}
  for m in members:
    if m.content_path in loaded:
      continue
    rgb = jnp.asarray(image_lib.load_image(m.content_path, long_side=max(hw)))
    # Colour control (Gatys et al. 2017) changes what the network sees.
    seen, styles = rgb, style_rgbs
    if spec.preserve_color == 'histogram':
      styles = [color.match_color_histogram(s, rgb) for s in style_rgbs]
    elif spec.preserve_color == 'luminance':
      pairs = [color.luminance_only(rgb, s) for s in style_rgbs]
      seen, styles = pairs[0][0], [s for _, s in pairs]
    loaded[m.content_path] = (rgb, seen, styles)
  loss_spec = spec.scale_loss_specs[scale]
  pyramid = ''
  if loss_spec.style_levels > 1:
    pyramid = '; style also at ' + ', '.join(
        f'{hw[1] >> k}x{hw[0] >> k}' for k in range(1, loss_spec.style_levels)
    ) + ' px (style pyramid)'
  log(f'content: {_photo_list(list(loaded))} -> {hw[1]}x{hw[0]} px; '
      'style: ' + ', '.join(f'{p} -> {s.shape[1]}x{s.shape[0]} px'
                            for p, s in zip(spec.style_paths, style_rgbs))
      + pyramid + f'; memory path: {loss_spec.describe_memory(hw)}')

  # Targets depend on the content and, for sliced Wasserstein, on the seed
  # (its projections): compute them once per distinct pair.
  by_seed = loss_spec.style_loss == 'sliced_wasserstein'
  keys = [(m.content_path, m.seed if by_seed else 0) for m in members]
  # The style targets depend on the content only through colour control.
  style_depends = (spec.preserve_color != '', by_seed)
  style_key = lambda key: tuple(k if d else None
                                for k, d in zip(key, style_depends))
  blend = jnp.asarray(spec.style_blend, jnp.float32)
  targets, region_style_targets = {}, {}
  # The regions at this size: the same for every member of the call.
  masks = spec.regions.masks(hw) if spec.regions is not None else None
  for key in dict.fromkeys(keys):
    _, seen, styles = loaded[key[0]]
    with phases.phase('targets'):
      targets[key] = _compute_targets(
          params, vgg.preprocess(seen), [vgg.preprocess(s) for s in styles],
          blend, loss_spec, key=prng_keys(key[1])['projections'])
      if spec.regions is not None:
        # Once per style key: a sweep over photos (or a clip's frames)
        # shares them.
        if style_key(key) not in region_style_targets:
          region_style_targets[style_key(key)] = _region_targets(
              spec.regions, params, loss_spec, masks, styles,
              [str(p) for p in spec.style_paths],
              prng_keys(key[1])['projections'],
              log if key == keys[0] else None)
        targets[key].update(region_style_targets[style_key(key)])
        if spec.regions.kept:
          targets[key]['photo'] = _photo_target(spec.regions, masks, seen)
      jax.block_until_ready(targets[key])  # timed here, not where first used
  style_keys = [style_key(key) for key in keys]
  shared, per_member = {}, {}
  parts = [('content', {k[0] for k in keys}), ('style', set(style_keys))]
  if 'photo' in targets[keys[0]]:  # regions kept as the photo
    parts.append(('photo', {k[0] for k in keys}))
  if 'style_coarse' in targets[keys[0]]:  # the style pyramid's levels
    parts.append(('style_coarse', set(style_keys)))
  for part, distinct in parts:
    if len(distinct) == 1:
      shared[part] = targets[keys[0]][part]
    else:
      per_member[part] = _stack([targets[k][part] for k in keys])
  per_member.update(extra_targets or {})

  starts = []
  for i, m in enumerate(members):
    rgb, seen, styles = loaded[m.content_path]
    if start_rgb is not None:
      start = jax.image.resize(start_rgb[i], seen.shape, 'lanczos3').clip(0, 1)
    else:
      start = initial_image(spec.init, seen, styles[0],
                            prng_keys(m.seed)['init'])
    starts.append(vgg.preprocess(start))
  content_layers = jnp.ones(len(loss_spec.content_layers), jnp.float32)
  weights = [{**{k: jnp.asarray(v, jnp.float32)
                 for k, v in m.loss_weights.items()},
              'content_layers': content_layers} for m in members]
  return Problem(params, shared, per_member, _stack(weights), jnp.stack(starts),
                 jnp.stack([loaded[m.content_path][0] for m in members]),
                 spec.preserve_color)
