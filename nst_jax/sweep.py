r"""Weight sweeps: many runs of one config as one compiled, sharded program.

A sweep lists values for some of a config's loss weights or its seed in
`config.sweep` (see configs/default.py). Every combination ('grid') or every
i-th tuple ('zip') is a *member*: the single run whose config is the sweep's
with the sweep section cleared and those values filled in (`member_config`).

Only traced values change between members (the loss weights and the start
image), so the style and content targets are computed once and all members are
optimised together: `optimize.init` and `optimize.run_chunk` are `jax.vmap`ped
over the weights and start images and compiled once, ahead of time, for the
whole sweep. Members are sharded over every device on a 1-D mesh ('sweep'):
`chunk` members per compiled call (a multiple of the device count, the last
call padded by repeating its last member, whose copies are dropped), params
and targets replicated. Member i's image equals `transfer.run` of member i's
config (to float rounding of the batched convolutions).

  python scripts/sweep.py --config=configs/starry_sweep.py:quick

Several hosts (e.g. a TPU pod slice): run the same command on every host with
`--distributed` (or NST_DISTRIBUTED=1), which calls `jax.distributed.initialize()`
first; the mesh then spans every host's devices, each host feeds its own
shards, and host 0 writes the outputs.

Workdir layout:
  config.json              the sweep's config, its members, weights, versions
  member_NN_<field>=<value>_....png   one per member; each PNG's metadata holds
                           that member's single-run config (scripts/run.py
                           --config=<the PNG> makes it again)
  contact_sheet.png        every member, labelled with its values
  results.jsonl            per member: values, final loss terms, iterations,
                           evaluations, status, device
"""

import collections
import dataclasses
import itertools
import json
import math
import os
from pathlib import Path
import re
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from nst_jax import image as image_lib
from nst_jax import losses
from nst_jax import optimize
from nst_jax import transfer
from nst_jax import vgg
from nst_jax import weights as weights_lib
from nst_jax.errors import UserError

SWEEPABLE = transfer.SWEEPABLE
MODES = ('grid', 'zip')
# Each member is a whole image set on the host and on a device: refuse sweeps
# that are surely typos ('1e-3,...' pasted into the wrong field) rather than
# start thousands of runs.
MAX_MEMBERS = 4096
_WEIGHT_FIELDS = ('content_weight', 'style_weight', 'tv_weight')


@dataclasses.dataclass(frozen=True)
class SweepPlan:
  """A checked sweep (see `plan_sweep`).

  Attributes:
    base: the single-run config the members share (sweep section cleared).
    run_plan: `transfer.plan_run` of `base`.
    fields: the swept fields, in SWEEPABLE order.
    values: each swept field's values, as parsed (floats, ints for 'seed',
      canonical comma lists for 'style_layer_weights').
    members: each member's {field: value}, in order.
    mode: 'grid' or 'zip'.
    chunk: members per compiled call as asked (0 = all).
    tile_size: long side of a contact sheet tile, px.
  """
  base: ml_collections.ConfigDict
  run_plan: transfer.RunPlan
  fields: tuple[str, ...]
  values: dict[str, tuple]
  members: tuple[dict[str, Any], ...]
  mode: str
  chunk: int
  tile_size: int


# --- Members ------------------------------------------------------------------

def _default_sweep() -> ml_collections.ConfigDict:
  from configs import default  # pylint: disable=import-outside-toplevel
  return default.get_config().sweep


def single_run_config(config: ml_collections.ConfigDict
                      ) -> ml_collections.ConfigDict:
  """`config` with its sweep section back at the defaults ("no sweep")."""
  out = config.copy_and_resolve_references()
  if 'sweep' in out:
    with out.unlocked():
      out.sweep = _default_sweep()
  return out


def member_config(base: ml_collections.ConfigDict, values: dict[str, Any]
                  ) -> ml_collections.ConfigDict:
  """The single-run config of one member: `base` with `values` filled in."""
  out = single_run_config(base)
  for field, value in values.items():
    out[field] = value
  return out


def _parse_values(field: str, text: str, num_style_layers: int,
                  problems: list[str]) -> tuple:
  """One sweep field's values, checked like the single-run field."""
  where = f'config.sweep.{field}={text!r}'
  if field == 'style_layer_weights':
    groups = [g.strip() for g in text.split(';') if g.strip()]
    out = []
    for group in groups:
      found: list[str] = []
      numbers = transfer._floats(  # pylint: disable=protected-access
          'sweep.style_layer_weights', group, num_style_layers, found)
      if found:
        problems.append(f"{found[0]} (values are ';'-separated comma lists, "
                        "one number per style layer, e.g. "
                        "'1,1,1,1,1;1,0,0,0,0')")
        return ()
      out.append(','.join(f'{n:g}' for n in numbers))
    return tuple(out)
  items = transfer.split_list(text)
  try:
    if field == 'seed':
      values = tuple(int(item) for item in items)
    else:
      values = tuple(float(item) for item in items)
  except ValueError:
    kind = 'whole numbers' if field == 'seed' else 'numbers'
    problems.append(f'{where} is not a comma-separated list of {kind}, e.g. '
                    + ("'0,1,2'" if field == 'seed' else "'1e-2,1e-1,1,10'"))
    return ()
  if any(not math.isfinite(v) or v < 0 for v in values):
    problems.append(f'{where}: every value must be finite and >= 0')
    return ()
  return values


def _members(fields: Sequence[str], values: dict[str, tuple], mode: str
             ) -> list[dict[str, Any]]:
  lists = [values[f] for f in fields]
  combos = itertools.product(*lists) if mode == 'grid' else zip(*lists)
  return [dict(zip(fields, combo)) for combo in combos]


def plan_sweep(config: ml_collections.ConfigDict,
               workdir: str | os.PathLike) -> SweepPlan:
  """Checks the sweep section and the shared config; raises UserError.

  Every problem (sweep values, and whatever `transfer.plan_run` finds in the
  config the members share) is reported at once, one line each.
  """
  problems: list[str] = []
  sweep = config.get('sweep')
  if not isinstance(sweep, ml_collections.ConfigDict):
    raise UserError('config has no sweep section: start from configs/default.py '
                    '(or configs/starry_sweep.py) and set config.sweep.<field>')
  unknown = sorted(set(sweep.keys()) - set(_default_sweep().keys()))
  if unknown:
    problems.append(f'config.sweep has unknown field(s) {", ".join(unknown)}: '
                    f'sweepable are {", ".join(SWEEPABLE)}; settings mode, '
                    'chunk, tile_size')
  fields = transfer.swept_fields(config)
  if not fields:
    problems.append('config.sweep lists no values: set one or more of '
                    + ', '.join(f'config.sweep.{f}' for f in SWEEPABLE)
                    + ", e.g. --config.sweep.style_weight=1e-2,1e-1,1,10")
  mode = sweep.get('mode')
  if mode not in MODES:
    problems.append(f'config.sweep.mode={mode!r}: choose one of '
                    f'{", ".join(map(repr, MODES))}')
  settings: list[str] = []
  transfer._check_number(sweep, 'chunk', settings, integer=True, minimum=0)  # pylint: disable=protected-access
  transfer._check_number(sweep, 'tile_size', settings, integer=True,  # pylint: disable=protected-access
                         minimum=16, maximum=2048)
  # _check_number names top-level fields; these live in config.sweep.
  problems += [p.replace('config.', 'config.sweep.', 1) for p in settings]
  if config.get('resume'):
    problems.append('config.resume is for scripts/run.py: a sweep cannot be '
                    'resumed; clear config.resume and start it again')
  num_style_layers = len(transfer.split_list(config.get('style_layers', '')))
  values = {f: _parse_values(f, str(sweep[f]), num_style_layers, problems)
            for f in fields}
  if 'seed' in fields and config.get('init') != 'noise':
    problems.append(f'config.sweep.seed is set but config.init='
                    f'{config.get("init")!r}: the seed only picks the noise '
                    "start image, so set config.init='noise' (or clear "
                    'config.sweep.seed)')
  # Member i must be the single run of its config: refuse what the batched
  # program does not do the way transfer.run does.
  if config.get('scales', 1) != 1:
    problems.append(f'config.scales={config.get("scales")}: sweeps run one '
                    'scale; set config.scales=1 (sweep at a small size, then '
                    'run the chosen member coarse-to-fine with scripts/run.py)')
  if 'seed' in fields and config.get('style_loss') == 'sliced_wasserstein':
    problems.append('config.sweep.seed with config.style_loss='
                    "'sliced_wasserstein': the seed also draws the projection "
                    'directions, which a sweep shares between members; sweep '
                    'the seed with another style_loss, or run each seed alone')
  members: list[dict[str, Any]] = []
  if fields and mode in MODES and all(values.values()):
    lengths = {f: len(v) for f, v in values.items()}
    if mode == 'zip' and len(set(lengths.values())) > 1:
      problems.append("config.sweep.mode='zip' needs lists of one length, got "
                      + ', '.join(f'{f}: {n}' for f, n in lengths.items())
                      + " (or use mode='grid' for every combination)")
    elif math.prod(lengths.values()) > MAX_MEMBERS and mode == 'grid':
      problems.append(f'config.sweep makes {math.prod(lengths.values())} '
                      f'members, more than {MAX_MEMBERS}: sweep fewer values')
    else:
      members = _members(fields, values, mode)

  base = single_run_config(config)
  try:
    run_plan = transfer.plan_run(base, workdir)
  except UserError as e:
    problems.extend(str(e).splitlines())
  if problems:
    raise UserError('\n'.join(problems))
  return SweepPlan(base=base, run_plan=run_plan, fields=fields, values=values,
                   members=tuple(members), mode=mode, chunk=int(sweep.chunk),
                   tile_size=int(sweep.tile_size))


def chunk_layout(num_members: int, chunk: int, num_devices: int
                 ) -> list[list[int]]:
  """Which member each slot of each compiled call optimises.

  Every call has the same number of slots (so one compiled program serves
  them all): `chunk` (0 = all members) rounded up to a multiple of
  `num_devices`, but no more than the members need. The last call's spare
  slots repeat its last member; those copies are dropped from the outputs.

  Returns:
    One list of member indices per call, all of the same length.
  """
  size = num_members if chunk <= 0 else min(chunk, num_members)
  size = -(-size // num_devices) * num_devices
  layout = []
  for start in range(0, num_members, size):
    group = list(range(start, min(start + size, num_members)))
    layout.append(group + [group[-1]] * (size - len(group)))
  return layout


def format_value(value: Any) -> str:
  """A swept value as people write it: 10.0 -> '10', 0.01 -> '0.01'."""
  return f'{value:g}' if isinstance(value, float) else str(value)


def member_name(index: int, values: dict[str, Any], num_members: int) -> str:
  """'member_03_style_weight=10_tv_weight=1.png': the index, then its values."""
  width = max(2, len(str(num_members - 1)))
  parts = [f'member_{index:0{width}d}'] + [
      f'{field}={format_value(value)}' for field, value in values.items()]
  # Only characters every file system and shell take without quoting.
  return re.sub(r'[^A-Za-z0-9._,=+-]', '_', '_'.join(parts)) + '.png'


def default_workdir(config: ml_collections.ConfigDict) -> Path:
  """outputs/sweep-<content>-<style>-<YYYYmmdd-HHMMSS>."""
  single = transfer.default_workdir(config)
  return single.parent / f'sweep-{single.name}'


# --- The compiled program --------------------------------------------------------

class _CompiledOnce:
  """A jitted function lowered and compiled at its first call, then reused.

  Calling the compiled executable (not the jit wrapper) makes "one compile for
  the whole sweep" a guarantee rather than a hope: a later call whose shapes
  or shardings differed would raise instead of silently compiling again.
  """

  def __init__(self, name: str, fn, counts: collections.Counter, **jit_kwargs):
    self._name, self._counts = name, counts
    self._jitted = jax.jit(fn, **jit_kwargs)
    self._compiled = None

  def __call__(self, *args):
    if self._compiled is None:
      self._compiled = self._jitted.lower(*args).compile()
      self._counts[f'compile:{self._name}'] += 1
    return self._compiled(*args)


def compiled_sweep_steps(plan: transfer.RunPlan, mesh: Mesh,
                         counts: collections.Counter):
  """(init, run_chunk, loss_terms) over a batch of members, sharded on `mesh`.

  init(x0[M, H, W, 3], params, targets, weights[M]) -> OptState (leaves [M, ...])
  run_chunk(state, num_steps, params, targets, weights) -> OptState
  loss_terms(x[M, H, W, 3], params, targets, weights) -> {term: float32[M]}

  Batched arguments are sharded over 'sweep' (M a multiple of the devices),
  params, targets and num_steps replicated. `counts` counts traces ('init',
  'chunk', 'terms') and compiles ('compile:init', ...).
  """
  spec, ospec = plan.loss_spec, plan.optimizer_spec
  total_loss = transfer.loss_fn(spec)
  batched = NamedSharding(mesh, P('sweep'))
  replicated = NamedSharding(mesh, P())

  def init(x0, params, targets, weights):
    counts['init'] += 1
    one = lambda x, w: optimize.init(ospec, total_loss, x, params, targets, w)
    return jax.vmap(one)(x0, weights)

  def chunk(state, num_steps, params, targets, weights):
    counts['chunk'] += 1
    # Each member's while_loop stops on its own status; under vmap, finished
    # members are carried through unchanged until the last one stops.
    one = lambda s, w: optimize.run_chunk(ospec, total_loss, s, num_steps,
                                          params, targets, w)
    return jax.vmap(one)(state, weights)

  def terms(x, params, targets, weights):
    counts['terms'] += 1
    one = lambda x, w: losses.combined_loss(x, params, targets, w, spec)[1]
    return jax.vmap(one)(x, weights)

  return (
      _CompiledOnce('init', init, counts,
                    in_shardings=(batched, replicated, replicated, batched),
                    out_shardings=batched),
      _CompiledOnce('chunk', chunk, counts,
                    in_shardings=(batched, replicated, replicated, replicated,
                                  batched),
                    out_shardings=batched, donate_argnums=0),
      _CompiledOnce('terms', terms, counts,
                    in_shardings=(batched, replicated, replicated, batched),
                    out_shardings=batched))


def _put(value, sharding: NamedSharding) -> jax.Array:
  """A global array with `sharding` from a value every process holds whole.

  make_array_from_callback hands each process only its own devices' slices,
  so the same code feeds one host or many.
  """
  value = np.asarray(value)
  return jax.make_array_from_callback(value.shape, sharding,
                                      lambda index: value[index])


def _host(x: jax.Array) -> np.ndarray:
  """The whole of a (possibly multi-host) array, on this host."""
  if jax.process_count() == 1:
    return np.asarray(x)
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _slot_devices(x: jax.Array) -> list[str]:
  """The device that holds each slot (leading index) of a sharded array."""
  out = [''] * x.shape[0]
  for device, index in x.sharding.devices_indices_map(x.shape).items():
    for slot in range(*index[0].indices(x.shape[0])):
      out[slot] = str(device)
  return out


_STATUS = {optimize.RUNNING: 'finished', optimize.CONVERGED: 'converged',
           optimize.LINESEARCH_FAILED: 'converged',
           optimize.NONFINITE: 'diverged'}


# --- The sweep -------------------------------------------------------------------

def run_sweep(config: ml_collections.ConfigDict,
              workdir: str | os.PathLike | None = None,
              log: transfer.Log = print) -> dict[str, Any]:
  """Runs every member of `config.sweep`; writes everything under `workdir`.

  Returns:
    {'workdir': Path, 'members': [row per member, as in results.jsonl, with
     'file' a Path], 'sheet': Path, 'devices': [str], 'sharding': the
     jax.sharding.Sharding of the last call's images, 'traces': {name:
     count}}. Only process 0 writes
     files; every process returns the same.

  Raises:
    UserError: a bad config value or input file (all reported at once, before
      any compilation).
  """
  plan = plan_sweep(config, workdir or default_workdir(config))
  run_plan, workdir = plan.run_plan, plan.run_plan.workdir
  writer = jax.process_index() == 0
  params, weights_info = weights_lib.load_vgg19_params(run_plan.weights_path,
                                                       log=log)
  params = vgg.prepare_params(params)
  problem = transfer.build_problem(plan.base, run_plan, params, log)
  member_configs = [member_config(plan.base, values) for values in plan.members]
  names = [member_name(i, values, len(member_configs))
           for i, values in enumerate(plan.members)]
  starts = [_start_image(c, problem) for c in member_configs]
  weights = [transfer.loss_weights(c, _member_run_plan(run_plan, c))
             for c in member_configs]

  devices = jax.devices()
  mesh = Mesh(np.array(devices), ('sweep',))
  batched = NamedSharding(mesh, P('sweep'))
  replicated = NamedSharding(mesh, P())
  layout = chunk_layout(len(member_configs), plan.chunk, len(devices))
  log(f'sweep: {len(member_configs)} members ({plan.mode} of '
      + ', '.join(f'{f} x{len(plan.values[f])}' for f in plan.fields)
      + f') on {len(devices)} device(s) ({devices[0].platform}), '
      f'{len(layout)} call(s) of {len(layout[0])}')

  versions = transfer.library_versions()
  if writer:
    workdir.mkdir(parents=True, exist_ok=True)
    record = {'config': json.loads(config.to_json()),
              'members': [{'member': i, 'file': n, 'values': v}
                          for i, (n, v) in enumerate(zip(names, plan.members))],
              'weights': weights_info, 'versions': versions,
              'devices': [str(d) for d in devices],
              'processes': jax.process_count()}
    transfer._write_text_atomic(  # pylint: disable=protected-access
        workdir / 'config.json', json.dumps(record, indent=2))

  counts: collections.Counter = collections.Counter()
  init_fn, chunk_fn, terms_fn = compiled_sweep_steps(run_plan, mesh, counts)
  shared = (jax.tree.map(lambda v: _put(v, replicated), problem.params),
            jax.tree.map(lambda v: _put(v, replicated), problem.targets))
  total = plan.base.max_iterations
  results: list[dict | None] = [None] * len(member_configs)
  t0 = time.perf_counter()
  sharding = None
  for call, group in enumerate(layout):
    x0 = _put(np.stack([np.asarray(starts[i]) for i in group]), batched)
    w = jax.tree.map(lambda *leaves: _put(np.stack(leaves), batched),
                     *[weights[i] for i in group])
    state = init_fn(x0, *shared, w)
    if call == 0:
      state.value.block_until_ready()
      log(f'compiled and evaluated the start points in '
          f'{time.perf_counter() - t0:.1f}s')
    members = f'members {group[0]}-{max(group)}'
    while True:
      iteration, status = _host(state.iteration), _host(state.status)
      running = (status == optimize.RUNNING) & (iteration < total)
      if not running.any():
        break
      # Running members move in step: they share the iteration count.
      steps = min(plan.base.snapshot_every, total - int(iteration[running].max()))
      state = chunk_fn(state, _put(np.int32(steps), replicated), *shared, w)
      evaluations = _host(state.evaluations)
      log(f'{members}  iter {int(_host(state.iteration).max()):>5}/{total}  '
          f'evals {int(evaluations.min())}-{int(evaluations.max())}  '
          f'{time.perf_counter() - t0:.1f}s')
    terms = {k: _host(v) for k, v in terms_fn(state.x, *shared, w).items()}
    images = _host(state.x)
    iteration, evaluations = _host(state.iteration), _host(state.evaluations)
    status = _host(state.status)
    slot_devices = _slot_devices(state.x)
    sharding = state.x.sharding
    for slot, i in enumerate(group):
      if results[i] is not None:
        continue  # a padding copy of the member in the slot before
      results[i] = {
          'member': i, 'file': names[i], 'values': plan.members[i],
          **{k: float(v[slot]) for k, v in terms.items()},
          'iterations': int(iteration[slot]),
          'evaluations': int(evaluations[slot]),
          'status': _STATUS[int(status[slot])], 'device': slot_devices[slot],
          # The picture transfer.run saves (colour recombined in luminance
          # mode), one image at a time.
          'image': problem.output_rgb(jnp.asarray(images[slot])),
      }
  log(f'optimised {len(member_configs)} members in {time.perf_counter() - t0:.1f}s '
      f'(compiles: {", ".join(f"{k[8:]} {v}" for k, v in sorted(counts.items()) if k.startswith("compile:"))})')

  sheet = workdir / 'contact_sheet.png'
  if writer:
    sha = weights_info['params_sha256']
    for row, c in zip(results, member_configs):
      image_lib.save_png(workdir / row['file'], row['image'],
                         transfer.png_metadata(c, sha, versions))
    image_lib.save_png(sheet, np.asarray(_sheet_for(plan, results), np.float32)
                       / 255.0, transfer.png_metadata(config, sha, versions))
  rows = [{k: v for k, v in r.items() if k != 'image'} for r in results]
  if writer:
    transfer._write_text_atomic(  # pylint: disable=protected-access
        workdir / 'results.jsonl', ''.join(json.dumps(r) + '\n' for r in rows))
    for r in rows:
      log(f"{r['file']}: total {r['total']:.4g}  content {r['content']:.4g}  "
          f"style {r['style']:.4g}  tv {r['tv']:.4g}  ({r['iterations']} "
          f"iterations, {r['evaluations']} evaluations, {r['status']})")
    log(f'wrote {len(rows)} images, {sheet}, results.jsonl and config.json '
        f'in {workdir} ({time.perf_counter() - t0:.1f}s)')
  return {'workdir': workdir,
          'members': [dict(r, file=workdir / r['file']) for r in rows],
          'sheet': sheet, 'devices': [str(d) for d in devices],
          'sharding': sharding, 'traces': dict(counts)}


def _member_run_plan(run_plan: transfer.RunPlan,
                     config: ml_collections.ConfigDict) -> transfer.RunPlan:
  """run_plan with the member's own style layer weights (checked in plan_sweep)."""
  numbers = transfer._floats(  # pylint: disable=protected-access
      'style_layer_weights', config.style_layer_weights,
      len(run_plan.loss_spec.style_layers), [])
  return dataclasses.replace(run_plan, style_layer_weights=numbers)


def _start_image(config: ml_collections.ConfigDict,
                 problem: transfer.Problem) -> jax.Array:
  """A member's start image (Caffe space [H, W, 3]), as transfer.run makes it.

  Only the noise start depends on a member's values (its seed); the others
  are the shared problem's.
  """
  if config.init != 'noise':
    return problem.x0
  # build_problem's path, with the member's seed: the style image only
  # matters for init='style', so the content stands in for it.
  return vgg.preprocess(transfer.initial_image(
      'noise', problem.content_rgb, problem.content_rgb,
      transfer.init_key(config.seed)))


# --- Contact sheet ------------------------------------------------------------

_PAD = 8


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
  # Pillow's built-in font at a chosen size (Aileron, FreeType); without
  # FreeType Pillow falls back to its fixed 11 px bitmap font.
  try:
    return ImageFont.load_default(size=size)
  except ImportError:
    return ImageFont.load_default()


def contact_sheet(images: Sequence[np.ndarray], labels: Sequence[Sequence[str]],
                  num_cols: int, *, tile_size: int = 128, title: str = '',
                  row_headers: Sequence[str] = (),
                  col_headers: Sequence[str] = ()) -> Image.Image:
  """Tiles the images in rows of `num_cols`, each labelled underneath.

  Args:
    images: RGB float[H, W, 3] in [0, 1], all of one size.
    labels: per image, its lines of text (e.g. 'style_weight=10').
    num_cols: tiles per row; rows follow.
    tile_size: long side of each tile, px (images are resized to it).
    title: text above everything; '\n' separates lines.
    row_headers: text left of each row (for a 2-D grid), or ().
    col_headers: text above each column, or ().

  Returns:
    An RGB PIL image: white background, black text.
  """
  h, w = images[0].shape[:2]
  scale = tile_size / max(h, w)
  tw, th = max(1, round(w * scale)), max(1, round(h * scale))
  font_px = max(12, round(tile_size / 9))
  font = _font(font_px)
  line = font_px + 4
  measure = lambda text: math.ceil(font.getlength(text))
  num_rows = -(-len(images) // num_cols)
  lines_per_label = max((len(l) for l in labels), default=0)
  cell_w = max([tw] + [measure(t) for l in labels for t in l]
               + [measure(t) for t in col_headers])
  cell_h = th + lines_per_label * line
  left = max([measure(t) for t in row_headers], default=-_PAD) + _PAD
  title_lines = title.splitlines()
  # Title lines, a gap, then the column headers just above the tiles.
  top = len(title_lines) * line + (_PAD if title_lines else 0)
  top += line if col_headers else 0
  width = max([left + num_cols * (cell_w + _PAD) + _PAD]
              + [measure(t) + 2 * _PAD for t in title_lines])
  height = top + num_rows * (cell_h + _PAD) + _PAD
  sheet = Image.new('RGB', (width, height), 'white')
  draw = ImageDraw.Draw(sheet)
  for j, text in enumerate(title_lines):
    draw.text((_PAD, _PAD // 2 + j * line), text, fill='black', font=font)
  # Upscaled small results keep their pixels visible; larger ones are
  # filtered down.
  resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
  for col, text in enumerate(col_headers):
    x = left + _PAD + col * (cell_w + _PAD)
    draw.text((x + (cell_w - measure(text)) // 2, top - line + 2), text,
              fill='black', font=font)
  for row, text in enumerate(row_headers):
    y = top + _PAD + row * (cell_h + _PAD) + th // 2 - font_px // 2
    draw.text((_PAD, y), text, fill='black', font=font)
  for k, (image, label) in enumerate(zip(images, labels)):
    row, col = divmod(k, num_cols)
    x = left + _PAD + col * (cell_w + _PAD)
    y = top + _PAD + row * (cell_h + _PAD)
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    tile = Image.fromarray(pixels).resize((tw, th), resample)
    sheet.paste(tile, (x + (cell_w - tw) // 2, y))
    for j, text in enumerate(label):
      draw.text((x + (cell_w - measure(text)) // 2, y + th + 2 + j * line),
                text, fill='black', font=font)
  return sheet


def _sheet_for(plan: SweepPlan, results: Sequence[dict]) -> Image.Image:
  """The sweep's contact sheet: rows x columns for a 2-D grid, else in order."""
  base = plan.base
  title = (f'{Path(transfer.split_list(base.content)[0]).stem} x '
           f'{Path(transfer.split_list(base.style)[0]).stem}, '
           f'{base.image_size} px, {base.max_iterations} iterations')
  varying = [f for f in plan.fields if len(plan.values[f]) > 1]
  labels = [[f'{f}={format_value(v)}' for f, v in r['values'].items()]
            for r in results]
  row_headers = col_headers = ()
  if plan.mode == 'grid' and len(varying) == 2:
    # itertools.product varies the first field slowest: member index =
    # row * columns + column.
    rows_field, cols_field = varying
    num_cols = len(plan.values[cols_field])
    row_headers = [f'{rows_field}={format_value(v)}'
                   for v in plan.values[rows_field]]
    col_headers = [f'{cols_field}={format_value(v)}'
                   for v in plan.values[cols_field]]
    title += f'\nrows: {rows_field}, columns: {cols_field}'
  else:
    num_cols = math.ceil(math.sqrt(len(results)))
  return contact_sheet([r['image'] for r in results], labels, num_cols,
                       tile_size=plan.tile_size, title=title,
                       row_headers=row_headers, col_headers=col_headers)


# --- Benchmark -------------------------------------------------------------------

def time_sweep_vs_sequential(config: ml_collections.ConfigDict,
                             num_members: int = 4) -> dict[str, Any]:
  """Wall seconds of one N-member sweep against N single runs, in this process.

  The members sweep style_weight over powers of ten around the config's value
  (the config's own sweep section is replaced); everything else is the
  config's. Both sides are measured from the config to the written PNGs,
  compilation included: the sweep compiles once, each single run compiles
  its own program (as N separate scripts/run.py calls would, minus Python
  start-up). Outputs go to a temporary folder.

  Returns:
    {'num_members', 'image_size', 'max_iterations', 'devices', 'sweep_s',
     'sequential_s', 'ratio' (sweep_s / sequential_s)}.
  """
  base = single_run_config(config)
  values = [base.style_weight * 10.0 ** (k - num_members // 2)
            for k in range(num_members)]
  swept = base.copy_and_resolve_references()
  swept.sweep.style_weight = ','.join(repr(v) for v in values)
  swept.sweep.mode = 'grid'
  swept.sweep.chunk = 0
  quiet = lambda *_: None
  with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    run_sweep(swept, Path(tmp) / 'sweep', log=quiet)
    sweep_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k, value in enumerate(values):
      transfer.run(member_config(base, {'style_weight': value}),
                   Path(tmp) / f'run_{k}', log=quiet)
    sequential_s = time.perf_counter() - t0
  return {'num_members': num_members, 'image_size': base.image_size,
          'max_iterations': base.max_iterations,
          'devices': jax.device_count(), 'sweep_s': round(sweep_s, 2),
          'sequential_s': round(sequential_s, 2),
          'ratio': round(sweep_s / sequential_s, 3)}
