"""How much memory optimising an image needs, and which loss path fits.

`losses.LossSpec.memory` chooses how the loss's gradient keeps its memory
('plain', 'remat' or 'tiles': see its docstring). On XLA:CPU 'remat'
measured no lower than 'plain' (its scheduler runs the recomputations
early), and 'tiles' needs more than 'plain' below about 2048 px (its own
copies of the image and their cotangents outweigh the activations it saves),
so 'auto' goes from 'plain' to 'tiles' there.

`estimate_memory_bytes` models the peak of each path, calibrated on measured
peaks (peak RSS on a CPU, the device peak on a GPU; figures below);
`choose_memory_path` picks the fastest path whose estimate stays under MARGIN
of the available memory (or of config.memory_budget, when that is lower), and
`refusal_message` says what to do when none does.
"""

from collections.abc import Sequence

import jax
import psutil

from nst_jax import image as image_lib
from nst_jax import losses
from nst_jax import vgg
from nst_jax.errors import UserError

# config.memory values: 'auto' lets choose_memory_path pick.
MEMORY_MODES = ('auto',) + losses.MEMORY_PATHS

# The estimate may use at most this fraction of the available memory: the
# model is within about 15% of measured peaks, and the runtime, the images
# and the other processes need room too.
MARGIN = 0.85

# Tile sides (px) 'auto' tries, largest (least halo overhead) first.
TILE_CANDIDATES = (1024, 768, 512, 384, 256, 192, 128)

# Calibration, on the peaks in docs/memory.md (Per memory path): peak RSS of
# `scripts/benchmark.py --memory_sizes=512,1024,2048 --memory_paths=plain,
# remat,tiles` (3 L-BFGS iterations of the default loss, pyramid included)
# and of configs/highres.py's 4096 px scale. Least squares on the relative
# error gives the fixed part, bytes of peak per byte of the conv outputs
# (_activation_bytes, summed over the pyramid's levels; on 'tiles' over one
# crop per level) and per byte of the images; every point is within 11%, and
# so are the two checked after the fit on points it had not seen.
_FIXED_BYTES = int(0.95 * 2**30)
_PER_ACTIVATION = {'plain': 2.89, 'remat': 3.15}
_TILES_PER_ACTIVATION = 2.30  # of each level's crop (tile + 2 halo px a side)
_TILES_PER_IMAGE = 31.6       # x, gradient, padded copies, their cotangents

# On a GPU the device peak (`memory_stats()['peak_bytes_in_use']`) is below
# the CPU model: no Python or runtime on the card, and XLA:GPU frees buffers
# sooner. So a GPU keeps a fixed 0.3 GiB and scales the per-member part by
# path, fitted on four H200 peaks at 512-8192 px (docs/memory.md, On a GPU;
# each estimate within +8%, none under its peak). 'remat' is unmeasured on a
# GPU and keeps the CPU model.
_GPU_FIXED_BYTES = int(0.3 * 2**30)
_GPU_SCALE = {'plain': 0.65, 'remat': 1.0, 'tiles': 0.90}


def available_memory_bytes() -> int | None:
  """Bytes the optimisation may use: the accelerator's limit, else free RAM.

  On a GPU this is JAX's allocator limit (75% of the card by default, see
  `refusal_message`); on a CPU psutil's available memory (Linux, macOS,
  Windows). None when neither can be read.
  """
  try:
    stats = jax.devices()[0].memory_stats() or {}
    if stats.get('bytes_limit'):
      return int(stats['bytes_limit'])
  except Exception:  # pylint: disable=broad-except
    pass  # Backends without memory_stats (CPU) raise or return None.
  try:
    return int(psutil.virtual_memory().available)
  except Exception:  # pylint: disable=broad-except
    return None


def _activation_bytes(hw: tuple[int, int], layers: Sequence[str]) -> int:
  """Bytes of every float32 conv output up to the deepest of `layers`."""
  total = 0
  for block, names in vgg.block_layers(layers).items():
    step = 2 ** (block - 1)
    channels = vgg.CONV_SHAPES[names[0]][-1]
    total += (hw[0] // step) * (hw[1] // step) * channels * 4 * len(names)
  return total


def _per_member_bytes(hw: tuple[int, int], layers: Sequence[str],
                      history_size: int, memory: str, tile: int,
                      style_levels: int = 1) -> int:
  """One member's share of the peak: its loss path and L-BFGS history.

  The style pyramid's levels (hw halved 1 .. style_levels - 1 times) keep
  their activations too on 'plain' and 'remat' (up to a third more); on
  'tiles' each level is tiled like the picture and keeps one crop's.
  """
  image = hw[0] * hw[1] * 3 * 4
  history = 2 * history_size * image
  level_hws = [(hw[0] >> k, hw[1] >> k) for k in range(style_levels)]
  activations = sum(_activation_bytes(level, layers) for level in level_hws)
  if memory != 'tiles':
    return int(_PER_ACTIVATION[memory] * activations + history)
  grids = [losses.tile_grid(level, layers, tile) for level in level_hws]
  crops = [side + 2 * halo for side, halo, _, _ in grids]
  images = sum(h * w * 3 * 4 for h, w in level_hws)
  loss = (_TILES_PER_ACTIVATION * sum(_activation_bytes((c, c), layers)
                                      for c in crops) +
          _TILES_PER_IMAGE * images)
  return int(loss + history)


def estimate_memory_bytes(hw: tuple[int, int], layers: Sequence[str],
                          history_size: int, num_styles: int = 1,
                          memory: str = 'plain', tile: int = 0,
                          members: int = 1, style_levels: int = 1,
                          platform: str | None = None) -> int:
  """Estimated peak bytes of optimising an (H, W) image by one loss path.

  Args:
    hw: (height, width) of the image being optimised, px.
    layers: every VGG19 layer the loss reads.
    history_size: L-BFGS pairs kept (2 images each).
    num_styles: style images; their targets are computed one at a time
      before the loop, so they do not add to the peak (kept for callers).
    memory: 'plain', 'remat' or 'tiles' (losses.MEMORY_PATHS).
    tile: LossSpec.tile for 'tiles' (0 = losses.DEFAULT_TILE).
    members: images optimised together (a vmapped sweep chunk).
    style_levels: levels of the style pyramid (losses.LossSpec.style_levels).
    platform: 'cpu', 'gpu', ...; None = JAX's default backend. A GPU uses
      its own calibration (device peak), every other platform the CPU's.

  Returns:
    Bytes: the fixed runtime part plus `members` times the per-image part
    (calibrated on measured peaks: see the constants above).
  """
  del num_styles  # Targets are computed before the loop, one style at a time.
  per_member = _per_member_bytes(hw, layers, history_size, memory, tile,
                                 style_levels)
  if (platform or jax.default_backend()) == 'gpu':
    return int(_GPU_FIXED_BYTES
               + max(1, members) * _GPU_SCALE[memory] * per_member)
  return int(_FIXED_BYTES + max(1, members) * per_member)


def _fits(needed: int, available: int | None) -> bool:
  return available is None or needed <= MARGIN * available


def _tile_candidates(hw: tuple[int, int], layers: Sequence[str]) -> list[int]:
  """Tile sides worth trying for an (H, W) image, largest first (px)."""
  stride = vgg.min_image_side(layers)
  whole = losses.tile_side(layers, max(hw))
  sides = {min(losses.tile_side(layers, t), whole) for t in TILE_CANDIDATES}
  return sorted((s for s in sides if s >= stride), reverse=True)


def choose_memory_path(hw: tuple[int, int], layers: Sequence[str],
                       history_size: int, num_styles: int = 1,
                       members: int = 1, requested: str = 'auto',
                       tile: int = 0, *, available: int | None = -1,
                       field: str = 'config.image_size',
                       value: int | None = None,
                       style_levels: int = 1,
                       budget: float = 0.0) -> tuple[str, int]:
  """The loss path (and tile side) for optimising an (H, W) image.

  Args:
    hw: (height, width) of the largest image optimised, px.
    layers: every VGG19 layer the loss reads.
    history_size: L-BFGS pairs kept.
    num_styles: style images.
    members: images optimised together (a vmapped sweep chunk).
    requested: 'auto' (pick) or a forced path from losses.MEMORY_PATHS.
    tile: tile side asked for with 'tiles', px; 0 = the largest that fits.
    available: bytes that may be used; -1 (default) reads
      `available_memory_bytes()`, None means unknown (nothing is refused).
    field, value: the config field and value named in a refusal.
    style_levels: levels of the style pyramid.
    budget: GiB the run may plan for (config.memory_budget), on top of the
      limit above; 0 = no budget of its own.

  Returns:
    (memory, tile) for losses.LossSpec: 'auto' gives 'plain' when its
    estimate is under MARGIN of the available memory, else 'remat', else
    'tiles' with the largest candidate tile that fits; a forced path is kept.

  Raises:
    UserError: when the chosen or forced path does not fit (see
      `refusal_message`), or `requested` is unknown.
  """
  if requested not in MEMORY_MODES:
    raise UserError(f'config.memory={requested!r}: use one of {list(MEMORY_MODES)}')
  if available == -1:
    available = available_memory_bytes()
  budgeted = budget > 0 and (available is None or budget * 2**30 < available)
  if budgeted:
    available = int(budget * 2**30)
  need = lambda memory, t=0: estimate_memory_bytes(
      hw, layers, history_size, num_styles, memory, t, members, style_levels)
  refuse = lambda memory, t, forced=True: UserError(refusal_message(
      hw, layers, history_size, num_styles, members, memory, t, available,
      field=field, value=value, style_levels=style_levels,
      budgeted=budgeted, forced=forced))
  if requested == 'auto' and available is None:
    return 'plain', 0
  if requested in ('auto', 'plain', 'remat'):
    for memory in (('plain', 'remat') if requested == 'auto' else (requested,)):
      if _fits(need(memory), available):
        return memory, 0
    if requested != 'auto':
      raise refuse(requested, 0)
  candidates = [tile] if tile else _tile_candidates(hw, layers)
  for side in candidates:
    if _fits(need('tiles', side), available):
      return 'tiles', side
  raise refuse('tiles', candidates[-1], forced=bool(tile))


def refusal_message(hw: tuple[int, int], layers: Sequence[str],
                    history_size: int, num_styles: int, members: int,
                    memory: str, tile: int, available: int, *,
                    field: str = 'config.image_size',
                    value: int | None = None, style_levels: int = 1,
                    budgeted: bool = False, forced: bool = True) -> str:
  """One line: what the size needs, what may be used and why, and the fix.

  Names the MARGIN kept (so 'needs 58.5 GiB, 59.4 GiB available' does not
  read as a contradiction), the largest long side that fits on the same path,
  and, on a GPU, how to let JAX use more of the card. `budgeted`: `available`
  is config.memory_budget, below what the machine has. `forced`: the path
  (and tile) was asked for, so 'auto' may do better; False when 'auto' tried
  every tile down to `tile`.
  """
  needed = estimate_memory_bytes(hw, layers, history_size, num_styles, memory,
                                 tile, members, style_levels)
  usable = MARGIN * available
  path = f"memory='{memory}'" + (f' (tile {losses.tile_side(layers, tile)} px)'
                                 if memory == 'tiles' else '')
  fits = _largest_fitting_side(hw, layers, history_size, num_styles, members,
                               memory, tile, usable, style_levels)
  value = max(hw) if value is None else value
  text = (f'{field}={value} needs about {needed / 2**30:.1f} GiB with {path}'
          f'{f" for {members} members" if members > 1 else ""}, but only '
          f'{usable / 2**30:.1f} GiB may be used ({MARGIN:.0%} of the '
          f'{available / 2**30:.1f} GiB '
          f'{"of config.memory_budget" if budgeted else "available"}, kept as '
          'a safety margin): ')
  fixes = []
  if fits:
    fixes.append(f'use {field} <= {fits}')
  if forced and (memory != 'tiles' or tile):
    fixes.append("set config.memory='auto' (or 'tiles' with config.tile=0) "
                 'to pick a path that fits')
  if members > 1:
    fixes.append('lower config.sweep.chunk')
  if budgeted:
    fixes.append('raise config.memory_budget (0 = what the machine has)')
  if jax.default_backend() == 'gpu':
    fixes.append('let JAX use more of the GPU (it takes 75% by default): '
                 'XLA_PYTHON_CLIENT_MEM_FRACTION=0.95')
  return text + ', or '.join(fixes or ['use a machine with more memory'])


def _largest_fitting_side(hw: tuple[int, int], layers: Sequence[str],
                          history_size: int, num_styles: int, members: int,
                          memory: str, tile: int, usable: float,
                          style_levels: int = 1) -> int:
  """Largest long side (px) whose resized image fits `usable` bytes; 0: none."""
  stride = vgg.min_image_side(layers)
  low, high = stride - 1, max(hw)
  while low < high:  # invariant: low fits (or is below the smallest side)
    mid = (low + high + 1) // 2
    mid_hw = image_lib.resized_hw(hw, mid)
    # Unforced tiles: the smallest candidate, the least memory 'auto' has.
    mid_tile = (_tile_candidates(mid_hw, layers)[-1]
                if memory == 'tiles' and not tile else tile)
    size = estimate_memory_bytes(mid_hw, layers, history_size, num_styles,
                                 memory, mid_tile, members, style_levels)
    if size <= usable and min(mid_hw) >= stride:
      low = mid
    else:
      high = mid - 1
  return low if low >= stride else 0
