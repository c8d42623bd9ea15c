"""One style-transfer run, from a config to PNGs: the library behind scripts/run.py.

`plan_run` checks everything a user can get wrong (config values, layer names,
images, sizes, weights file, workdir) and reports every problem at once, before
anything is compiled. `run` then computes the style and content targets once
and optimises the image on the device in jit-compiled chunks of
`snapshot_every` iterations, logging and saving a snapshot between chunks.

Workdir layout:
  config.json        the full config plus weights and library versions
  losses.jsonl       one row per chunk: iteration, evaluations, loss terms, time
  snapshots/iter_NNNNNN.png
  final.png          the result (PNG text chunks hold the config and seed)
"""

import dataclasses
import datetime
import functools
import json
import math
import os
from pathlib import Path
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nst_jax import color
from nst_jax import image as image_lib
from nst_jax import losses
from nst_jax import optimize
from nst_jax import vgg
from nst_jax import weights as weights_lib
from nst_jax.errors import UserError

Log = Callable[[str], Any]
INIT_MODES = ('content', 'noise', 'style')
PRESERVE_COLOR = ('', 'luminance', 'histogram')
# Each of these must be a finite number >= 0 (a weight of 0 switches a term off).
_NONNEGATIVE = ('content_weight', 'style_weight', 'tv_weight')


@dataclasses.dataclass(frozen=True)
class RunPlan:
  """Everything `run` needs, checked. Paths are resolved, sizes known."""
  content_path: Path
  style_paths: tuple[Path, ...]
  style_blend: tuple[float, ...]
  content_hw: tuple[int, int]
  style_long_side: int
  init_path: Path | None
  preserve_color: str
  loss_spec: losses.LossSpec
  optimizer_spec: optimize.OptimizerSpec
  content_layer_weights: tuple[float, ...]
  style_layer_weights: tuple[float, ...]
  weights_path: Path | None
  workdir: Path
  # (H, W) of the content at each scale, smallest first; the last is content_hw.
  scale_hws: tuple[tuple[int, int], ...] = ()
  style_scale: float = 1.0


def scale_sizes(config: ml_collections.ConfigDict) -> list[int]:
  """Long sides of the coarse-to-fine scales, smallest first (ends at image_size)."""
  return [max(1, round(config.image_size / config.scale_ratio ** k))
          for k in reversed(range(config.scales))]


def plan_for_scale(plan: RunPlan, index: int) -> RunPlan:
  """`plan` at scale `index` (see `scale_sizes`): content and style resized."""
  h, w = plan.scale_hws[index]
  return dataclasses.replace(
      plan, content_hw=(h, w),
      style_long_side=max(1, round(plan.style_scale * max(h, w))))


def default_config_keys() -> tuple[str, ...]:
  """Every field a run config has (configs/default.py)."""
  from configs import default  # pylint: disable=import-outside-toplevel
  return tuple(default.get_config().keys())


# Fields of config.sweep that list values (the others are its settings).
SWEEPABLE = ('content_weight', 'style_weight', 'tv_weight',
             'style_layer_weights', 'seed')


def swept_fields(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The fields config.sweep lists values for, in SWEEPABLE order; () = none."""
  sweep = config.get('sweep') or {}
  return tuple(f for f in SWEEPABLE if str(sweep.get(f, '') or '').strip())


def split_list(value: str) -> tuple[str, ...]:
  """'a, b,c' -> ('a', 'b', 'c'); empty items dropped."""
  return tuple(item.strip() for item in str(value).split(',') if item.strip())


def _floats(field: str, value: str, count: int, problems: list[str]
            ) -> tuple[float, ...] | None:
  """Parses a comma-separated list of `count` positive floats ('' = equal)."""
  items = split_list(value)
  if not items:
    return tuple([1.0 / count] * count) if count else ()
  try:
    numbers = tuple(float(item) for item in items)
  except ValueError:
    problems.append(f'config.{field}={value!r} is not a comma-separated list '
                    f'of numbers: give {count} numbers such as '
                    f"'{','.join(['1'] * count)}', or '' for equal weights")
    return None
  if len(numbers) != count:
    problems.append(f'config.{field}={value!r} has {len(numbers)} numbers for '
                    f'{count} entries: give exactly {count}, or \'\' for equal')
    return None
  if any(not math.isfinite(n) or n < 0 for n in numbers) or sum(numbers) <= 0:
    problems.append(f'config.{field}={value!r}: the numbers must be finite, '
                    '>= 0 and not all zero')
    return None
  return numbers


def _layers(field: str, value: str, problems: list[str]) -> tuple[str, ...]:
  layers = split_list(value)
  if not layers:
    problems.append(f"config.{field} is empty: name at least one layer, e.g. "
                    "'block4_conv2'")
  bad = vgg.unknown_layers(layers)
  if bad:
    problems.append(f'config.{field} has unknown layer(s) {", ".join(bad)}: '
                    f'use Keras names block1_conv1 ... block5_conv4 '
                    f'({", ".join(vgg.CONV_LAYERS)})')
    return ()
  if len(set(layers)) != len(layers):
    problems.append(f'config.{field}={value!r} names a layer twice: list each '
                    'once')
  return layers


def _check_number(config, field, problems, *, integer=False, minimum=None,
                  maximum=None):
  value = config.get(field)
  ok_type = (isinstance(value, int) if integer else
             isinstance(value, (int, float))) and not isinstance(value, bool)
  if not ok_type or not math.isfinite(value):
    kind = 'a whole number' if integer else 'a number'
    problems.append(f'config.{field}={value!r} must be {kind}')
    return False
  if minimum is not None and value < minimum:
    problems.append(f'config.{field}={value!r} must be >= {minimum}')
    return False
  if maximum is not None and value > maximum:
    problems.append(f'config.{field}={value!r} must be <= {maximum}')
    return False
  return True


def _resolve(field: str, spec: str, problems: list[str]) -> Path | None:
  try:
    return image_lib.resolve_image(spec)
  except UserError as e:
    problems.append(f'config.{field}: {e}')
    return None


def estimate_memory_bytes(hw: tuple[int, int], layers, history_size: int,
                          num_styles: int = 1) -> int:
  """Rough peak memory (bytes) of optimising an (H, W) image.

  The activations of every layer up to the deepest one, kept for the
  backward pass (x4: conv inputs, outputs, ReLU masks, gradients), the
  L-BFGS history (2 x history_size images), the params with their gradient
  kernels, and the runtime itself. Measured peaks on CPU were 0.9, 1.0 and
  1.8 GiB at 128, 256 and 512 px; this gives 1.0, 1.2 and 1.8 GiB.
  """
  h, w = hw
  deepest = max(vgg.CONV_LAYERS.index(layer) for layer in layers)
  activations = 0
  for name in vgg.CONV_LAYERS[:deepest + 1]:
    block = vgg.layer_block(name)
    side = 2 ** (block - 1)
    activations += (h // side) * (w // side) * vgg.CONV_SHAPES[name][-1] * 4
  history = 2 * history_size * h * w * 3 * 4
  params = 2 * sum(np.prod(shape) + shape[-1]
                   for shape in vgg.CONV_SHAPES.values()) * 4
  return int(4 * activations * max(1, num_styles) + history + params + 800 * 2**20)


def available_memory_bytes() -> int | None:
  """Memory the optimisation can use: the accelerator's, else the host's."""
  try:
    stats = jax.devices()[0].memory_stats() or {}
    if stats.get('bytes_limit'):
      return int(stats['bytes_limit'])
  except Exception:  # pylint: disable=broad-except
    pass
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def default_workdir(config: ml_collections.ConfigDict) -> Path:
  """outputs/<content>-<style>-<YYYYmmdd-HHMMSS>: never an earlier run's."""
  stem = lambda s: Path(split_list(s)[0] if split_list(s) else 'image').stem
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
  return Path('outputs') / f'{stem(config.content)}-{stem(config.style)}-{stamp}'


def _check_workdir(workdir: Path, problems: list[str]) -> None:
  if workdir.exists() and not workdir.is_dir():
    problems.append(f'--workdir={workdir} is a file: choose a directory path')
    return
  if workdir.is_dir() and (workdir / 'config.json').exists():
    problems.append(f'--workdir={workdir} already holds a run: choose a new '
                    '--workdir (or delete that one) so it is not overwritten')
    return
  # The nearest existing ancestor must let us create the workdir and write.
  probe = workdir
  while not probe.exists():
    probe = probe.parent
  if not os.access(probe, os.W_OK | os.X_OK):
    problems.append(f'--workdir={workdir} is not writable ({probe} does not '
                    'allow writing): choose a directory you can write to')


def plan_run(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
             resuming: bool = False) -> RunPlan:
  """Checks the whole config and its files; raises UserError listing problems.

  Cheap: reads image headers and checks the weights file, decodes nothing
  large and compiles nothing.
  """
  problems: list[str] = []
  unknown = sorted(set(config.keys()) - set(default_config_keys()))
  if unknown:
    problems.append(f'config has unknown field(s) {", ".join(unknown)}: see '
                    'configs/default.py for the fields')
  # A sweep is many runs: scripts/sweep.py plans each member with its sweep
  # section cleared, so a set one here means the wrong script.
  swept = swept_fields(config)
  if swept:
    problems.append(f'config.sweep.{swept[0]} is set: scripts/run.py makes one '
                    'image; run sweeps with scripts/sweep.py (or clear '
                    + ', '.join(f'config.sweep.{f}' for f in swept) + ')')
  # --- Numbers.
  _check_number(config, 'image_size', problems, integer=True, minimum=1,
                maximum=8192)
  _check_number(config, 'style_scale', problems, minimum=1e-3, maximum=16)
  scales_ok = _check_number(config, 'scales', problems, integer=True,
                            minimum=1, maximum=8)
  ratio_ok = _check_number(config, 'scale_ratio', problems, minimum=1.01,
                           maximum=8)
  for field in _NONNEGATIVE:
    _check_number(config, field, problems, minimum=0)
  _check_number(config, 'seed', problems, integer=True, minimum=0)
  _check_number(config, 'max_iterations', problems, integer=True, minimum=0)
  _check_number(config, 'snapshot_every', problems, integer=True, minimum=1)
  _check_number(config, 'history_size', problems, integer=True, minimum=1,
                maximum=1000)
  _check_number(config, 'max_linesearch_steps', problems, integer=True,
                minimum=1, maximum=1000)
  _check_number(config, 'first_step_fraction', problems, minimum=1e-9,
                maximum=1.0)
  _check_number(config, 'learning_rate', problems, minimum=1e-12)
  # --- Choices.
  for field, choices in (('pooling', vgg.POOLINGS),
                         ('normalization', losses.NORMALIZATIONS),
                         ('style_loss', losses.STYLE_LOSSES),
                         ('preserve_color', PRESERVE_COLOR),
                         ('optimizer', optimize.OPTIMIZERS),
                         ('linesearch', optimize.JAXOPT_LINESEARCHES)):
    if config.get(field) not in choices:
      problems.append(f'config.{field}={config.get(field)!r}: choose one of '
                      f'{", ".join(map(repr, choices))}')
  # --- Layers and their weights.
  content_layers = _layers('content_layers', config.content_layers, problems)
  style_layers = _layers('style_layers', config.style_layers, problems)
  style_layer_weights = _floats('style_layer_weights',
                                config.style_layer_weights, len(style_layers),
                                problems)
  # --- Images.
  content_path = _resolve('content', config.content, problems)
  style_specs = split_list(config.style)
  if not style_specs:
    problems.append("config.style is empty: name a style image, e.g. "
                    "'starry_night' or a path")
  style_paths = [_resolve('style', s, problems) for s in style_specs]
  style_blend = _floats('style_blend', config.style_blend, len(style_specs),
                        problems)
  init_path = None
  if config.init not in INIT_MODES:
    init_path = _resolve('init', config.init, problems)
  # --- Sizes: every image must survive the pools down to the deepest layer.
  content_hw, style_long_side, scale_hws = (1, 1), 1, ((1, 1),)
  min_side = vgg.min_image_side(content_layers + style_layers or ('block1_conv1',))
  if content_path and isinstance(config.image_size, int) and config.image_size > 0:
    try:
      h, w = image_lib.read_image_size(content_path)
      content_hw = image_lib.resized_hw((h, w), config.image_size)
      sizes = (scale_sizes(config) if scales_ok and ratio_ok
               else [config.image_size])
      scale_hws = tuple(image_lib.resized_hw((h, w), size) for size in sizes)
      smallest = scale_hws[0]
      if min(smallest) < min_side:
        where = (f'config.image_size={config.image_size}' if len(sizes) == 1
                 else f'the smallest of config.scales={config.scales} '
                 f'(image_size {config.image_size} / {config.scale_ratio}^'
                 f'{config.scales - 1})')
        problems.append(
            f'{where} makes the content image {smallest[1]}x{smallest[0]} px, '
            f'too small for the deepest layer (needs >= {min_side} px on each '
            'side after resizing): raise image_size, use fewer scales or '
            'shallower layers')
    except UserError as e:
      problems.append(f'config.content: {e}')
  if isinstance(config.style_scale, (int, float)) and isinstance(
      config.image_size, int):
    style_long_side = max(1, round(config.style_scale * config.image_size))
    for spec, path in zip(style_specs, style_paths):
      if path is None:
        continue
      try:
        hw = image_lib.resized_hw(image_lib.read_image_size(path),
                                     style_long_side)
        if min(hw) < min_side:
          problems.append(
              f'config.style_scale={config.style_scale} makes style image '
              f'{spec} {hw[1]}x{hw[0]} px, too small for the deepest layer '
              f'(needs >= {min_side} px a side): raise style_scale or '
              'image_size')
      except UserError as e:
        problems.append(f'config.style: {e}')
  # --- Memory: refuse a size that cannot fit before spending minutes on it.
  if content_path and content_layers and style_layers and isinstance(
      config.history_size, int) and max(content_hw) > 1:
    need = lambda hw: estimate_memory_bytes(
        hw, content_layers + style_layers, config.history_size,
        len(style_specs))
    needed, available = need(content_hw), available_memory_bytes()
    if available and needed > 0.9 * available:
      # Memory grows with the pixel count above a fixed part: scale the
      # variable part, then step down until the estimate fits.
      fixed = need((0, 0))
      fits = int(config.image_size * math.sqrt(
          max(0.9 * available - fixed, 0) / max(needed - fixed, 1)))
      while fits > 1 and need(image_lib.resized_hw((h, w), fits)) > 0.9 * available:
        fits = int(fits * 0.99)
      problems.append(
          f'config.image_size={config.image_size} needs about '
          f'{needed / 2**30:.1f} GiB to optimise but {available / 2**30:.1f} '
          f'GiB is available: use image_size <= {fits}, or config.scales to '
          'reach the size in steps on a larger machine')
  # --- Weights file (checked now so a tampered file fails before compiling).
  weights_path = Path(config.weights) if config.weights else None
  if weights_path is not None:
    try:
      weights_lib.check_weights_file(weights_path)
    except UserError as e:
      problems.append(f'config.weights: {e}')
  # --- Workdir.
  workdir = Path(workdir)
  if not resuming:
    _check_workdir(workdir, problems)

  if problems:
    raise UserError('\n'.join(problems))
  loss_spec = losses.LossSpec(content_layers, style_layers, config.pooling,
                              config.normalization, config.style_loss)
  optimizer_spec = optimize.OptimizerSpec(
      name=config.optimizer, history_size=config.history_size,
      linesearch=config.linesearch,
      max_linesearch_steps=config.max_linesearch_steps,
      first_step_fraction=float(config.first_step_fraction),
      learning_rate=float(config.learning_rate))
  blend_total = sum(style_blend)
  return RunPlan(
      content_path=content_path, style_paths=tuple(style_paths),
      style_blend=tuple(b / blend_total for b in style_blend),
      content_hw=content_hw, style_long_side=style_long_side,
      init_path=init_path, preserve_color=config.preserve_color,
      loss_spec=loss_spec, optimizer_spec=optimizer_spec,
      content_layer_weights=tuple([1.0] * len(content_layers)),
      style_layer_weights=style_layer_weights, weights_path=weights_path,
      workdir=workdir, scale_hws=scale_hws, style_scale=config.style_scale)


def loss_weights(config: ml_collections.ConfigDict, plan: RunPlan
                 ) -> dict[str, jax.Array]:
  """The traced loss weights of a run (see `losses.combined_loss`)."""
  return {
      'content': jnp.float32(config.content_weight),
      'style': jnp.float32(config.style_weight),
      'tv': jnp.float32(config.tv_weight),
      'content_layers': jnp.asarray(plan.content_layer_weights, jnp.float32),
      'style_layers': jnp.asarray(plan.style_layer_weights, jnp.float32),
  }


def loss_fn(spec: losses.LossSpec):
  """x, params, targets, weights -> total loss (scalar), for `optimize`."""
  def total_loss(x, params, targets, weights):
    return losses.combined_loss(x, params, targets, weights, spec)[0]
  return total_loss


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
  h, w = content.shape[:2]
  if isinstance(mode_or_path, Path):
    return jax.image.resize(jnp.asarray(image_lib.load_image(mode_or_path)),
                            content.shape, 'lanczos3').clip(0.0, 1.0)
  if mode_or_path == 'noise':
    return jax.random.uniform(key, content.shape, jnp.float32)
  if mode_or_path == 'style':
    return jax.image.resize(style, content.shape, 'lanczos3').clip(0.0, 1.0)
  return content


def prng_keys(seed: int) -> dict[str, jax.Array]:
  """One PRNG key per purpose, split from `seed`: 'init' (noise start image)
  and 'projections' (sliced-Wasserstein directions)."""
  init, projections = jax.random.split(jax.random.key(seed), 2)
  return {'init': init, 'projections': projections}


def init_key(seed: int) -> jax.Array:
  """The PRNG key of the noise start image (see `prng_keys`)."""
  return prng_keys(seed)['init']


def library_versions() -> dict[str, str]:
  """Installed versions of nst_jax and the libraries that shape its results."""
  import importlib.metadata as md
  versions = {}
  for name in ('nst_jax', 'jax', 'jaxlib', 'flax', 'optax', 'jaxopt', 'numpy',
               'pillow'):
    try:
      versions[name] = md.version(name)
    except md.PackageNotFoundError:
      versions[name] = 'not installed'
  return versions


def png_metadata(config: ml_collections.ConfigDict, params_sha256: str,
                 versions: dict[str, str] | None = None) -> dict[str, str]:
  """PNG text chunks that let an image be traced and re-made.

  `scripts/run.py --config=<the PNG>` reads 'nst_jax:config' back (see
  `nst_jax.saved_config`). The config is recorded as it makes this image:
  where a resumed run came from is not part of it.

  Args:
    config: the config that made the image.
    params_sha256: sha256 of the VGG19 params (`weights.params_sha256`).
    versions: `library_versions()`; computed when None.

  Returns:
    {'nst_jax:config': JSON, 'nst_jax:seed', 'nst_jax:weights_sha256',
     'nst_jax:versions': JSON}.
  """
  recorded = config.copy_and_resolve_references()
  if 'resume' in recorded:
    recorded.resume = ''
  return {'nst_jax:config': recorded.to_json(),
          'nst_jax:seed': str(config.seed),
          'nst_jax:weights_sha256': params_sha256,
          'nst_jax:versions': json.dumps(versions or library_versions())}


def _format_seconds(seconds: float) -> str:
  seconds = int(round(seconds))
  return f'{seconds // 60}m{seconds % 60:02d}s' if seconds >= 60 else f'{seconds}s'


def _write_text_atomic(path: Path, text: str) -> None:
  tmp = path.with_name(f'.{path.name}.tmp')
  tmp.write_text(text)
  os.replace(tmp, path)


@dataclasses.dataclass
class Problem:
  """What the optimiser needs, on the device (see `build_problem`).

  Attributes:
    params: prepared VGG19 params (`vgg.prepare_params`).
    targets: content features and style statistics (`losses.compute_targets`).
    weights: traced loss weights (`loss_weights`).
    x0: the starting image, Caffe space float32[H, W, 3].
    content_rgb: the content image, RGB float32[H, W, 3] in [0, 1].
    preserve_color: '', 'luminance' or 'histogram' (see `output_rgb`).
  """
  params: dict
  targets: dict
  weights: dict
  x0: jax.Array
  content_rgb: jax.Array
  preserve_color: str = ''

  def output_rgb(self, x: jax.Array) -> np.ndarray:
    """The picture of an optimised image x: RGB float32[H, W, 3] in [0, 1].

    In 'luminance' mode x carries only luminance; the picture takes its
    chroma from the content (Gatys et al. 2017).
    """
    rgb = vgg.deprocess(x)
    if self.preserve_color == 'luminance':
      rgb = color.recombine_luminance(rgb, self.content_rgb)
    return np.asarray(jnp.clip(rgb, 0.0, 1.0))


def build_problem(config: ml_collections.ConfigDict, plan: RunPlan,
                  params: dict, log: Log = print,
                  init_rgb: jax.Array | None = None) -> Problem:
  """Loads the images, computes the targets once and the starting image.

  Args:
    init_rgb: overrides config.init with this RGB float32[h, w, 3] image in
      [0, 1], resized to the content (coarse-to-fine passes the last scale's
      result).
  """
  h, w = plan.content_hw
  content_rgb = jnp.asarray(image_lib.load_image(plan.content_path,
                                                 long_side=max(h, w)))
  style_rgbs = [jnp.asarray(image_lib.load_image(p, long_side=plan.style_long_side))
                for p in plan.style_paths]
  log(f'content: {plan.content_path} -> {w}x{h} px; style: ' + ', '.join(
      f'{p} -> {s.shape[1]}x{s.shape[0]} px'
      for p, s in zip(plan.style_paths, style_rgbs)))
  # Colour control (Gatys et al. 2017) changes what the network sees.
  content_seen = content_rgb
  if plan.preserve_color == 'histogram':
    style_rgbs = [color.match_color_histogram(s, content_rgb) for s in style_rgbs]
  elif plan.preserve_color == 'luminance':
    pairs = [color.luminance_only(content_rgb, s) for s in style_rgbs]
    content_seen = pairs[0][0]
    style_rgbs = [style for _, style in pairs]
  keys = prng_keys(config.seed)
  targets = jax.jit(losses.compute_targets, static_argnums=(4,))(
      params, vgg.preprocess(content_seen),
      [vgg.preprocess(s) for s in style_rgbs],
      jnp.asarray(plan.style_blend, jnp.float32), plan.loss_spec,
      key=keys['projections'])
  if init_rgb is not None:
    start = jax.image.resize(init_rgb, content_seen.shape,
                             'lanczos3').clip(0.0, 1.0)
  else:
    start = initial_image(plan.init_path or config.init, content_seen,
                          style_rgbs[0], keys['init'])
  return Problem(params, targets, loss_weights(config, plan),
                 vgg.preprocess(start), content_rgb, plan.preserve_color)


def compiled_steps(plan: RunPlan):
  """(init, run_chunk, loss_terms), jitted for this run's static structure.

  init(x0, params, targets, weights) -> OptState
  run_chunk(state, num_steps, params, targets, weights) -> OptState
  loss_terms(x, params, targets, weights) -> {'content', 'style', 'tv', 'total'}
  """
  spec, ospec = plan.loss_spec, plan.optimizer_spec
  total_loss = loss_fn(spec)
  init = jax.jit(functools.partial(optimize.init, ospec, total_loss))
  chunk = jax.jit(functools.partial(optimize.run_chunk, ospec, total_loss))
  terms = jax.jit(lambda x, p, t, w: losses.combined_loss(x, p, t, w, spec)[1])
  return init, chunk, terms


# --- Interruption and resumption ------------------------------------------------

STATE_FILE = 'state.npz'
# Fields that may differ between an interrupted run and its resumption.
_RESUMABLE_CHANGES = ('resume', 'max_iterations')


class Interrupted(Exception):
  """SIGINT/SIGTERM arrived; the run saved its state and stopped cleanly."""


class _StopRequests:
  """Turns SIGINT/SIGTERM into a flag checked between chunks.

  The first signal lets the current chunk finish (it is compiled code and
  cannot be stopped half-way without losing it); a second one exits at once.
  """

  def __init__(self, log: Log):
    self.signal_name = None
    self._log = log
    self._previous = {}

  def __enter__(self):
    # Signal handlers can only be set from the main thread.
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT, signal.SIGTERM):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    if self.signal_name is not None:
      # Second request: give up on the chunk, leave as the default would.
      signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
      raise KeyboardInterrupt
    self.signal_name = signal.Signals(signum).name
    self._log(f'{self.signal_name}: finishing this chunk, then saving the '
              'image and a resumable state (send it again to quit now)')

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    return False


def save_state(path: Path, state: optimize.OptState, rows: list[dict],
               scale: int = 0) -> None:
  """Writes the optimiser carry (at scale index `scale`) as an .npz, atomically.

  No pickles: arrays and a JSON header only.
  """
  leaves = jax.tree.leaves(state)
  meta = {'num_leaves': len(leaves), 'rows': rows, 'scale': scale}
  arrays = {f'leaf_{i:04d}': np.asarray(leaf) for i, leaf in enumerate(leaves)}
  arrays['__meta__'] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
  tmp = path.with_name(f'.{path.name}.tmp')
  with open(tmp, 'wb') as f:
    np.savez(f, **arrays)
  os.replace(tmp, path)


def read_state_scale(path: Path) -> int:
  """The scale index a `save_state` file was saved at (0 if unreadable)."""
  try:
    with np.load(path, allow_pickle=False) as data:
      return int(json.loads(bytes(data['__meta__']).decode()).get('scale', 0))
  except Exception:  # pylint: disable=broad-except
    return 0  # load_state reports the problem properly


def load_state(path: Path, like: optimize.OptState
               ) -> tuple[optimize.OptState, list[dict]]:
  """Reads `save_state`'s file into the structure of `like`."""
  fix = ('start a new run instead (this state does not fit the config)')
  try:
    with np.load(path, allow_pickle=False) as data:
      meta = json.loads(bytes(data['__meta__']).decode())
      leaves = [data[f'leaf_{i:04d}'] for i in range(meta['num_leaves'])]
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'{path} is not a readable run state ({e}): {fix}') from e
  like_leaves, treedef = jax.tree.flatten(like)
  if len(leaves) != len(like_leaves) or any(
      a.shape != b.shape or a.dtype != b.dtype
      for a, b in zip(leaves, like_leaves)):
    raise UserError(f'{path} was saved by a different optimiser or image '
                    f'size: {fix}')
  return jax.tree.unflatten(treedef, [jnp.asarray(a) for a in leaves]), meta['rows']


def check_resume(config: ml_collections.ConfigDict) -> Path:
  """The workdir to resume, checked against the config; raises UserError."""
  workdir = Path(config.resume)
  saved_path = workdir / 'config.json'
  if not (workdir / STATE_FILE).is_file() or not saved_path.is_file():
    raise UserError(
        f'config.resume={config.resume!r} holds no interrupted run (no '
        f'{STATE_FILE} and config.json there): give the workdir of a run that '
        'was stopped with Ctrl-C or SIGTERM')
  saved = json.loads(saved_path.read_text())['config']
  current = json.loads(config.to_json())
  # Fields added to nst_jax after the run was saved: at their defaults, they
  # change nothing.
  from configs import default  # pylint: disable=import-outside-toplevel
  defaults = json.loads(default.get_config().to_json())
  saved.update({k: defaults[k] for k in set(defaults) - set(saved)})
  changed = sorted(k for k in set(saved) | set(current)
                   if k not in _RESUMABLE_CHANGES and saved.get(k) != current.get(k))
  if changed:
    raise UserError(
        'config.resume: the interrupted run used ' + ', '.join(
            f'{k}={saved.get(k)!r}' for k in changed) +
        ' but this config has ' + ', '.join(
            f'{k}={current.get(k)!r}' for k in changed) +
        ': resume with the same config (only max_iterations may change)')
  return workdir


# --- The run ----------------------------------------------------------------------

def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike | None,
        log: Log = print) -> dict[str, Any]:
  """Runs style transfer as `config` says; writes everything under `workdir`.

  With `config.resume` set, continues the interrupted run saved there instead
  (`workdir` is then ignored).

  Returns:
    {'final': Path | None, 'workdir': Path, 'iterations': int,
     'evaluations': int, 'losses': {term: float}, 'status': str}; status is
    'finished', 'converged' or 'diverged' (then 'final' is None and the last
    finite snapshot is kept).

  Raises:
    UserError: a bad config value or input file (all reported at once, before
      any compilation).
    Interrupted: SIGINT/SIGTERM; the state was saved for `config.resume`.
  """
  resuming = bool(config.get('resume'))
  if resuming:
    workdir = check_resume(config)
  plan = plan_run(config, workdir or default_workdir(config), resuming=resuming)
  params, weights_info = weights_lib.load_vgg19_params(plan.weights_path,
                                                       log=log)
  params = vgg.prepare_params(params)
  log(f"weights: {weights_info['path']} (source {weights_info['source']}, "
      f"params sha256 {weights_info['params_sha256'][:16]}...)")
  workdir = plan.workdir
  (workdir / 'snapshots').mkdir(parents=True, exist_ok=True)
  versions = library_versions()
  metadata = png_metadata(config, weights_info['params_sha256'], versions)
  if not resuming:
    record = {'config': json.loads(config.to_json()), 'weights': weights_info,
              'versions': versions, 'device': str(jax.devices()[0])}
    _write_text_atomic(workdir / 'config.json', json.dumps(record, indent=2))

  t0 = time.perf_counter()
  num_scales = len(plan.scale_hws)
  first_scale = read_state_scale(workdir / STATE_FILE) if resuming else 0
  rows: list[dict] = []
  previous_rgb = None
  for index in range(first_scale, num_scales):
    scale_plan = plan_for_scale(plan, index)
    if num_scales > 1:
      h, w = scale_plan.content_hw
      log(f'scale {index + 1}/{num_scales}: {w}x{h} px')
    problem = build_problem(config, scale_plan, params, log,
                            init_rgb=previous_rgb)
    outcome = _optimise_scale(
        config, problem, scale_plan, workdir, metadata, log, rows,
        scale=index, num_scales=num_scales,
        resume=resuming and index == first_scale)
    state, rows = outcome
    if int(state.status) == optimize.NONFINITE:
      break
    # The next scale starts from this result, upsampled. In luminance mode
    # that is the optimised luminance image, not the recoloured picture.
    previous_rgb = jnp.clip(vgg.deprocess(state.x), 0.0, 1.0)

  iterations = sum(r['iteration'] for r in _last_row_per_scale(rows))
  result = {'workdir': workdir, 'iterations': iterations,
            'evaluations': sum(r['evaluations'] for r in _last_row_per_scale(rows)),
            'losses': rows[-1] if rows else {}}
  if int(state.status) == optimize.NONFINITE:
    # The loop never hands back a non-finite image: state.x is the last good one.
    kept = workdir / 'snapshots' / _snapshot_name(int(state.iteration), index,
                                                  num_scales)
    image_lib.save_png(kept, problem.output_rgb(state.x), metadata)
    log(f'error: the loss became NaN or infinite after iteration '
        f'{int(state.iteration)}; the last finite image is {kept}. Lower '
        'learning_rate (Adam) or the loss weights, or use optimizer=lbfgs.')
    return {**result, 'final': None, 'status': 'diverged'}
  status = 'converged' if int(state.status) == optimize.CONVERGED else 'finished'
  if int(state.status) == optimize.LINESEARCH_FAILED:
    log(f'stopped at iteration {int(state.iteration)}: the line search found '
        'no lower loss (converged to float32 precision); keeping the result')
    status = 'converged'
  final = workdir / 'final.png'
  image_lib.save_png(final, problem.output_rgb(state.x), metadata)
  (workdir / STATE_FILE).unlink(missing_ok=True)
  log(f'wrote {final} ({result["iterations"]} iterations, '
      f'{result["evaluations"]} evaluations, '
      f'{time.perf_counter() - t0:.1f}s); snapshots, losses.jsonl and '
      f'config.json are in {workdir}')
  return {**result, 'final': final, 'status': status}


def _snapshot_name(iteration: int, scale: int, num_scales: int) -> str:
  prefix = f'scale{scale + 1}_' if num_scales > 1 else ''
  return f'{prefix}iter_{iteration:06d}.png'


def _last_row_per_scale(rows: list[dict]) -> list[dict]:
  last = {}
  for row in rows:
    last[row.get('scale', 1)] = row
  return list(last.values())


def _optimise_scale(config, problem: Problem, plan: RunPlan, workdir: Path,
                    metadata: dict[str, str], log: Log, rows: list[dict], *,
                    scale: int, num_scales: int, resume: bool
                    ) -> tuple[optimize.OptState, list[dict]]:
  """Optimises one scale in compiled chunks, logging and saving between them."""
  init_fn, chunk_fn, terms_fn = compiled_steps(plan)
  args = (problem.params, problem.targets, problem.weights)
  t0 = time.perf_counter()
  state = init_fn(problem.x0, *args)
  if resume:
    state, rows = load_state(workdir / STATE_FILE, state)
    log(f'resuming {workdir} at iteration {int(state.iteration)}')
  state.value.block_until_ready()
  log(f'compiled and evaluated the start point in {time.perf_counter() - t0:.1f}s'
      f' (loss {float(state.value):.4g})')

  total = config.max_iterations
  t_start, it_start = time.perf_counter(), int(state.iteration)
  evals_start = int(state.evaluations)
  with _StopRequests(log) as stop:
    while int(state.iteration) < total and int(state.status) == optimize.RUNNING:
      steps = min(config.snapshot_every, total - int(state.iteration))
      state = chunk_fn(state, jnp.int32(steps), *args)
      terms = {k: float(v) for k, v in terms_fn(state.x, *args).items()}
      elapsed = time.perf_counter() - t_start
      it, evals = int(state.iteration), int(state.evaluations)
      rows = rows + [{'scale': scale + 1, 'iteration': it, 'evaluations': evals,
                      **terms, 'seconds': round(elapsed, 3)}]
      _write_text_atomic(workdir / 'losses.jsonl',
                         ''.join(json.dumps(r) + '\n' for r in rows))
      snapshot = workdir / 'snapshots' / _snapshot_name(it, scale, num_scales)
      image_lib.save_png(snapshot, problem.output_rgb(state.x), metadata)
      rate = (evals - evals_start) / elapsed if elapsed > 0 else float('nan')
      eta = elapsed / max(it - it_start, 1) * (total - it)
      where = f'scale {scale + 1}/{num_scales} ' if num_scales > 1 else ''
      log(f'{where}iter {it:>5}/{total}  evals {evals:>5}  total '
          f'{terms["total"]:.4g}  content {terms["content"]:.4g}  style '
          f'{terms["style"]:.4g}  tv {terms["tv"]:.4g}  {rate:.2f} evals/s  '
          f'ETA {_format_seconds(eta)}')
      more_to_do = it < total or scale + 1 < num_scales
      if stop.signal_name and more_to_do:
        save_state(workdir / STATE_FILE, state, rows, scale)
        raise Interrupted(
            f'stopped by {stop.signal_name} at iteration {it}: the latest image '
            f'is {snapshot}; continue with the same command plus '
            f'--config.resume={workdir}')
  return state, rows
