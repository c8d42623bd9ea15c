"""The one engine behind scripts/run.py, scripts/sweep.py and the benchmark.

`run(spec)` optimises every member of a `spec.RunSpec`: members whose content
has the same size are optimised together, `slots` at a time, by one compiled,
sharded program (each device runs its members `config.sweep.batch` at a
time under `jax.vmap`, by default one after another; a single member is not
mapped at all, so a single run costs what it always did). For each group of
members it goes through the scales (coarse-to-fine), and at each scale
through chunks of `snapshot_every` iterations, each one `optimize.run_chunk`
call, cut shorter where an iteration is slow so that a chunk lasts about
CHUNK_SECONDS (in a single process: processes would time their chunks
apart); between chunks it logs progress, appends to losses.jsonl and saves
the resumable state (atomically, so a run killed even with SIGKILL, e.g. by
the OOM killer, resumes from its last saved chunk), and every
`snapshot_every` iterations writes a snapshot per member. Ctrl-C / SIGTERM
finish the chunk, save and raise `Interrupted`; a NaN stops a member and
keeps its last finite image.

Workdir layout (a single run / a sweep):
  config.json        the config, members, weights and library versions
  losses.jsonl       one row per chunk (and member): iteration, evaluations,
                     loss terms, seconds
  snapshots/[<member>/][scaleK_]iter_NNNNNN.png
  final.png / member_NN_<field>=<value>....png   the results; each PNG's text
                     chunks hold its single-run config (run.py --config=<PNG>)
  contact_sheet.png, results.jsonl   (sweeps) every member, and its row
  state.npz          while unfinished: the optimiser state (no pickles)
"""

import collections
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from nst_jax import files
from nst_jax import image as image_lib
from nst_jax import losses
from nst_jax import optimize
from nst_jax import problem as problem_lib
from nst_jax import runtime
from nst_jax import spec as spec_lib
from nst_jax import vgg
from nst_jax import weights as weights_lib

Log = Callable[[str], Any]
STATUS = {optimize.RUNNING: 'finished', optimize.CONVERGED: 'converged',
          optimize.LINESEARCH_FAILED: 'converged',
          optimize.NONFINITE: 'diverged'}


class Interrupted(Exception):
  """SIGINT/SIGTERM arrived; the run saved its state and stopped cleanly."""


# --- Compiled programs ---------------------------------------------------------------

def total_loss(loss_spec: losses.LossSpec) -> Callable[..., jax.Array]:
  """loss(x, params, shared, per_member, weights) -> scalar, for one member."""
  def loss(x, params, shared, per_member, weights):
    return losses.combined_loss(x, params, {**shared, **per_member}, weights,
                                loss_spec)[0]
  return loss


def _over_members(fn: Callable, num_members: int, in_axes: tuple,
                  mesh: Mesh | None = None, batch: int = 1) -> Callable:
  """`fn` of one member applied to M members (leading axes, as in_axes says).

  Each device of `mesh` takes its share of the members (axis 'members') and
  runs them `batch` at a time under vmap, one batch after another (0: all at
  once). Under vmap the line search's conds become selects that run both
  branches, each evaluating the loss: a vmapped member costs ~2x a single run
  per evaluation on a CPU and 1.5x on an H200 at 512 px, where one member
  already fills the card. With batch 1 each member runs the operations of its
  single run, conds included. M = 1 (a single run) needs no mapping at all.
  """
  if num_members > 1:
    def local(*args):
      if batch == 0:
        return jax.vmap(fn, in_axes=in_axes)(*args)
      member_args = [a for a, axis in zip(args, in_axes) if axis is not None]
      def one_member(sliced):
        it = iter(sliced)
        return fn(*[a if axis is None else next(it)
                    for a, axis in zip(args, in_axes)])
      # lax.map with batch_size vmaps inside each batch; batch 1 must not
      # (a vmap of one still turns the conds into selects).
      return jax.lax.map(one_member, member_args,
                         batch_size=batch if batch > 1 else None)
    if mesh is None:
      return local
    specs = tuple(P() if axis is None else P('members') for axis in in_axes)
    # check_vma=False: jaxopt's conds mix per-member and replicated values,
    # which shard_map's type check refuses although each device's work is
    # its own.
    return jax.shard_map(local, mesh=mesh, in_specs=specs,
                         out_specs=P('members'), check_vma=False)
  def one(*args):
    args = [a if axis is None else jax.tree.map(lambda v: v[0], a)
            for a, axis in zip(args, in_axes)]
    return jax.tree.map(lambda v: v[None], fn(*args))
  return one


def compiled_programs(loss_spec: losses.LossSpec,
                      optimizer_spec: optimize.OptimizerSpec, mesh: Mesh,
                      num_members: int, traces: collections.Counter | None = None,
                      batch: int = 1):
  """(init, run_chunk, loss_terms) for `num_members` members, sharded on `mesh`.

  init(x0[M, H, W, 3], params, shared, per_member, weights) -> OptState[M]
  run_chunk(state, num_steps, max_evaluations, params, shared, per_member,
            weights) -> OptState
  loss_terms(x[M, H, W, 3], params, shared, per_member, weights) -> {term: [M]}

  Member-indexed arguments are sharded over the mesh axis 'members' (M a
  multiple of its devices); params, shared targets, num_steps and
  max_evaluations (`optimize.run_chunk`'s budget) replicated.
  Each device runs its members `batch` at a time (config.sweep.batch; see
  `_over_members`). jit compiles each once per shape (keep the returned
  functions to reuse them); `traces` counts the traces.
  """
  traces = traces if traces is not None else collections.Counter()
  loss = total_loss(loss_spec)
  ospec = optimizer_spec
  batched, replicated = NamedSharding(mesh, P('members')), NamedSharding(mesh, P())
  member_args = (None, None, 0, 0)  # params, shared, per_member, weights

  def init(x0, *args):
    traces['init'] += 1
    one = lambda x, *a: optimize.init(ospec, loss, x, *a)
    return _over_members(one, num_members, (0,) + member_args, mesh, batch)(
        x0, *args)

  def chunk(state, num_steps, max_evaluations, *args):
    traces['chunk'] += 1
    # Each member's while_loop stops on its own status; under vmap, finished
    # members are carried through unchanged until the last one stops.
    one = lambda s, n, budget, *a: optimize.run_chunk(
        ospec, loss, s, n, *a, max_evaluations=budget)
    return _over_members(one, num_members, (0, None, None) + member_args, mesh,
                         batch)(state, num_steps, max_evaluations, *args)

  def terms(x, params, shared, per_member, weights):
    traces['terms'] += 1
    one = lambda x, *a: losses.combined_loss(
        x, a[0], {**a[1], **a[2]}, a[3], loss_spec)[1]
    return _over_members(one, num_members, (0,) + member_args, mesh, batch)(
        x, params, shared, per_member, weights)

  args_sharding = (replicated, replicated, batched, batched)
  return (jax.jit(init, in_shardings=(batched,) + args_sharding,
                  out_shardings=batched),
          jax.jit(chunk, in_shardings=(batched, replicated, replicated)
                  + args_sharding,
                  out_shardings=batched, donate_argnums=0),
          jax.jit(terms, in_shardings=(batched,) + args_sharding,
                  out_shardings=batched))


def _put(value, sharding: NamedSharding) -> jax.Array:
  """A global array with `sharding` from a value every process holds whole."""
  value = np.asarray(value)
  return jax.make_array_from_callback(value.shape, sharding,
                                      lambda index: value[index])


# A chunk is cut short where iterations are slow, so that the state is saved
# (and Ctrl-C answered by a finished chunk) at least every few minutes.
CHUNK_SECONDS = 300.0


def chunk_steps(iteration: int, total: int, snapshot_every: int,
                seconds_per_iteration: float,
                chunk_seconds: float | None = None) -> int:
  """Iterations in the next chunk, >= 1.

  Up to the next multiple of `snapshot_every` (and at most to `total`), and
  no more than fit in `chunk_seconds` (default CHUNK_SECONDS) at
  `seconds_per_iteration` (the last chunk's, or the start point's compile
  and evaluation before any chunk has run).
  """
  chunk_seconds = CHUNK_SECONDS if chunk_seconds is None else chunk_seconds
  steps = min(snapshot_every - iteration % snapshot_every, total - iteration)
  if seconds_per_iteration > 0:
    steps = min(steps, int(chunk_seconds // seconds_per_iteration))
  return max(1, steps)


def _wait_in_python(x: jax.Array, poll_seconds: float = 0.05) -> None:
  """Waits for an asynchronously dispatched x in short sleeps.

  Python runs signal handlers only between bytecodes: a main thread blocked
  in a compiled chunk (minutes at 4096 px) would hear Ctrl-C only when the
  chunk ends. Sleeping in Python keeps the handlers prompt, so a second
  signal quits at once.
  """
  while not x.is_ready():
    time.sleep(poll_seconds)


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


def chunk_layout(num_members: int, chunk: int, num_devices: int
                 ) -> list[list[int]]:
  """Which member each slot of each compiled call optimises.

  Every call has the same number of slots (one compiled program serves them
  all): `chunk` (0 = all members) rounded up to a multiple of `num_devices`,
  but no more than the members need. The last call's spare slots repeat its
  last member; those copies are dropped from the outputs.
  """
  size = num_members if chunk <= 0 else min(chunk, num_members)
  size = -(-size // num_devices) * num_devices
  layout = []
  for start in range(0, num_members, size):
    group = list(range(start, min(start + size, num_members)))
    layout.append(group + [group[-1]] * (size - len(group)))
  return layout


def calls_of(spec: spec_lib.RunSpec, num_devices: int) -> list[list[int]]:
  """The compiled calls of a run: members of one content size, padded."""
  by_size: dict[tuple, list[int]] = {}
  for m in spec.members:
    by_size.setdefault(m.scale_hws, []).append(m.index)
  return [[group[i] for i in call] for group in by_size.values()
          for call in chunk_layout(len(group), spec.chunk, num_devices)]


# --- Records --------------------------------------------------------------------------

def library_versions() -> dict[str, str]:
  """Installed versions of nst_jax and the libraries that shape its results."""
  import importlib.metadata as md  # pylint: disable=import-outside-toplevel
  versions = {}
  for name in ('nst_jax', 'jax', 'jaxlib', 'flax', 'optax', 'jaxopt', 'numpy',
               'pillow'):
    try:
      versions[name] = md.version(name)
    except md.PackageNotFoundError:
      versions[name] = 'not installed'
  return versions


def png_metadata(config, params_sha256: str,
                 versions: dict[str, str] | None = None) -> dict[str, str]:
  """PNG text chunks that let an image be traced and made again.

  `scripts/run.py --config=<the PNG>` reads 'nst_jax:config' back (see
  `nst_jax.saved_config`); where a resumed run came from is not part of it.

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


def format_seconds(seconds: float) -> str:
  seconds = int(round(seconds))
  return f'{seconds // 60}m{seconds % 60:02d}s' if seconds >= 60 else f'{seconds}s'


# --- Interruption and resumption ------------------------------------------------------

class _StopRequests:
  """Turns SIGINT/SIGTERM into a flag checked between chunks.

  The first signal lets the current chunk finish (it is compiled code and
  cannot be stopped half-way without losing it); a second one exits at once,
  leaving the state saved last (`_Run.save`) in `workdir` to resume from.
  """

  def __init__(self, log: Log, workdir: Path | None = None):
    self.signal_name = None
    self._log = log
    self._workdir = workdir
    self._previous = {}

  def __enter__(self):
    # Signal handlers can only be set from the main thread.
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT, signal.SIGTERM):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    if self.signal_name is not None:
      # A compiled chunk may still be running: unwinding Python under it
      # crashes the interpreter's shutdown, so leave at once instead. Every
      # file is written atomically, so nothing is left half-written.
      where = ''
      if self._workdir and (self._workdir / spec_lib.STATE_FILE).is_file():
        where = ('; continue from the state saved last with --config.resume='
                 f'{self._workdir}')
      elif self._workdir:
        where = '; no state was saved yet, so the run starts over'
      print(f'{signal.Signals(signum).name} again: quit without finishing '
            f'the chunk{where}', file=sys.stderr, flush=True)
      sys.stdout.flush()
      os._exit(130)
    self.signal_name = signal.Signals(signum).name
    self._log(f'{self.signal_name}: finishing this chunk, then saving the '
              'images and a resumable state (send it again to quit now)')

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    return False


def save_state(path: Path, state: optimize.OptState, meta: dict) -> None:
  """Writes the optimiser carry and `meta` (JSON) as an .npz, atomically.

  No pickles: arrays and a JSON header only.
  """
  leaves = [_host(leaf) for leaf in jax.tree.leaves(state)]
  arrays = {f'leaf_{i:04d}': leaf for i, leaf in enumerate(leaves)}
  header = dict(meta, num_leaves=len(leaves))
  arrays['__meta__'] = np.frombuffer(json.dumps(header).encode(), np.uint8)
  if jax.process_index() == 0:
    files.atomic_write(path, lambda f: np.savez(f, **arrays))


def read_state_meta(path: Path) -> dict:
  """The JSON header of a `save_state` file."""
  try:
    with np.load(path, allow_pickle=False) as data:
      return json.loads(bytes(data['__meta__']).decode())
  except Exception as e:  # pylint: disable=broad-except
    raise spec_lib.UserError(
        f'{path} is not a readable run state ({e}): start a new run instead'
    ) from e


def load_state(path: Path, like: optimize.OptState) -> optimize.OptState:
  """Reads `save_state`'s arrays into the structure (and sharding) of `like`."""
  meta = read_state_meta(path)
  with np.load(path, allow_pickle=False) as data:
    leaves = [data[f'leaf_{i:04d}'] for i in range(meta['num_leaves'])]
  like_leaves, treedef = jax.tree.flatten(like)
  if len(leaves) != len(like_leaves) or any(
      a.shape != b.shape or a.dtype != b.dtype
      for a, b in zip(leaves, like_leaves)):
    raise spec_lib.UserError(f'{path} was saved by a different optimiser or '
                             'image size: start a new run instead')
  return jax.tree.unflatten(treedef, [_put(a, b.sharding) for a, b in
                                      zip(leaves, like_leaves)])


# --- The run ---------------------------------------------------------------------------

class _Run:
  """The state of one `run` call that the outer loop threads through."""

  def __init__(self, spec: spec_lib.RunSpec, log: Log):
    self.spec, self.log = spec, log
    self.workdir = spec.workdir
    self.writer = jax.process_index() == 0 and self.workdir is not None
    self.rows: list[dict] = []
    self.done: dict[int, dict] = {}
    self.traces: collections.Counter = collections.Counter()
    self.last_save = (time.perf_counter(), 0.0)  # (when, seconds it took)
    # By (members per call, loss spec): scales of one path share programs.
    self.programs: dict[tuple[int, losses.LossSpec], tuple] = {}
    self.metadata: dict[int, dict[str, str]] = {}  # PNG text chunks by member

  def compiled(self, mesh: Mesh, num_members: int, scale: int) -> tuple:
    key = (num_members, self.spec.scale_loss_specs[scale])
    if key not in self.programs:
      self.programs[key] = compiled_programs(
          key[1], self.spec.optimizer_spec, mesh, num_members, self.traces,
          batch=self.spec.batch)
    return self.programs[key]

  def write_text(self, name: str, text: str) -> None:
    if self.writer:
      files.atomic_write(self.workdir / name, lambda f: f.write(text.encode()))

  def snapshot_path(self, member: spec_lib.Member, iteration: int, scale: int
                    ) -> Path:
    num_scales = len(member.scale_hws)
    name = (f'scale{scale + 1}_' if num_scales > 1 else '') + \
        f'iter_{iteration:06d}.png'
    folder = self.workdir / 'snapshots'
    return folder / Path(member.file).stem / name if self.spec.sweep \
        else folder / name

  def save(self, state, call: int, scale: int, force: bool = False) -> None:
    """Saves the resumable state unless saving would cost > 5% of the time."""
    if self.workdir is None:
      return
    now = time.perf_counter()
    when, took = self.last_save
    if force or now - when >= 20 * took:
      save_state(self.workdir / spec_lib.STATE_FILE, state,
                 {'call': call, 'scale': scale, 'rows': self.rows,
                  'done': {str(k): v for k, v in self.done.items()}})
      self.last_save = (time.perf_counter(), time.perf_counter() - now)


def run(spec: spec_lib.RunSpec, log: Log = print) -> dict[str, Any]:
  """Makes every member of `spec`; writes everything under `spec.workdir`.

  Returns:
    {'workdir': Path, 'members': [per member: 'member', 'file' (Path),
     'values', loss terms, 'iterations', 'evaluations', 'status' ('finished',
     'converged' or 'diverged'), 'device'], 'sheet': Path | None, 'devices',
     'sharding': the last call's image sharding, 'traces': {name: count}}.
    Only process 0 writes files; every process returns the same.

  Raises:
    Interrupted: SIGINT/SIGTERM; the state was saved for `config.resume`.
  """
  t0, compiles = time.perf_counter(), runtime.compile_counts()
  if jax.process_index() != 0:
    log = lambda *_: None  # one voice: process 0 prints (and writes)
  params, weights_info = weights_lib.load_vgg19_params(spec.weights_path, log=log)
  params = vgg.prepare_params(params)
  log(f"weights: {weights_info['path']} (source {weights_info['source']}, "
      f"params sha256 {weights_info['params_sha256'][:16]}...)")
  r = _Run(spec, log)
  # A single run uses one device: padding it to every device would only
  # repeat it.
  devices = jax.devices() if spec.sweep else jax.devices()[:1]
  mesh = Mesh(np.array(devices), ('members',))
  calls = calls_of(spec, len(devices))
  versions = library_versions()
  sha = weights_info['params_sha256']
  r.metadata = {m.index: png_metadata(m.config, sha, versions)
                for m in spec.members}
  first_call, first_scale = 0, 0
  if spec.resume:
    meta = read_state_meta(spec.workdir / spec_lib.STATE_FILE)
    first_call, first_scale = meta['call'], meta['scale']
    r.rows, r.done = meta['rows'], {int(k): v for k, v in meta['done'].items()}
  elif r.writer:
    (r.workdir / 'snapshots').mkdir(parents=True, exist_ok=True)
    record = {'config': json.loads(spec.config.to_json()),
              'weights': weights_info, 'versions': versions,
              'devices': [str(d) for d in devices],
              'processes': jax.process_count()}
    if spec.sweep:
      record['members'] = [{'member': m.index, 'file': m.file, 'values': m.values}
                           for m in spec.members]
    r.write_text('config.json', json.dumps(record, indent=2))
  if spec.sweep:
    log(f'sweep: {len(spec.members)} members ({spec.mode} of '
        + ', '.join(f'{f} x{len(spec.values[f])}' for f in spec.fields)
        + f') on {len(devices)} device(s) ({devices[0].platform}), '
        f'{len(calls)} call(s) of {len(calls[0])}')

  sharding = None
  with _StopRequests(log, spec.workdir) as stop:
    for call_index, call in enumerate(calls):
      if call_index < first_call:
        continue
      members = [spec.members[i] for i in call]
      resume_scale = first_scale if spec.resume and call_index == first_call \
          else None
      state, problem, diverged, scale = _optimise_call(
          r, members, call_index, params, mesh, stop, resume_scale)
      sharding = state.x.sharding
      _finish_call(r, members, state, problem, diverged, scale)
      r.save(state, call_index + 1, 0, force=call_index + 1 < len(calls))

  rows = [r.done[m.index] for m in spec.members]
  sheet = None
  if spec.sweep and r.writer:
    r.write_text('results.jsonl', ''.join(json.dumps(row) + '\n' for row in rows))
    sheet = r.workdir / 'contact_sheet.png'
    from nst_jax import sweep  # pylint: disable=import-outside-toplevel
    image_lib.save_png(sheet, sweep.sheet_for(spec, rows, r.workdir),
                       png_metadata(spec.config, sha, versions))
  if r.workdir is not None and r.writer:
    (r.workdir / spec_lib.STATE_FILE).unlink(missing_ok=True)
  if spec.sweep:
    for row in rows:
      log(f"{row['file']}: total {row['total']:.4g}  content "
          f"{row['content']:.4g}  style {row['style']:.4g}  tv {row['tv']:.4g}"
          f"  ({row['iterations']} iterations, {row['evaluations']} "
          f"evaluations, {row['status']})")
    log(f'wrote {len(rows)} images, {sheet}, results.jsonl and config.json in '
        f'{r.workdir} ({time.perf_counter() - t0:.1f}s)')
  log(f'all compiling: {runtime.describe_compiles(compiles)}')
  return {'workdir': r.workdir, 'sheet': sheet,
          'members': [dict(row, file=r.workdir / row['file'] if r.workdir
                           else row['file']) for row in rows],
          'devices': [str(d) for d in devices], 'sharding': sharding,
          'traces': dict(r.traces), 'seconds': time.perf_counter() - t0,
          'rows': r.rows}


def _optimise_call(r: _Run, members: Sequence[spec_lib.Member], call_index: int,
                   params: dict, mesh: Mesh, stop: _StopRequests,
                   resume_scale: int | None):
  """Every scale of one compiled call.

  Returns:
    (state, problem, diverged[M], the index of the last scale optimised).
  """
  spec = r.spec
  num_scales = len(members[0].scale_hws)
  previous = None
  diverged = np.zeros(len(members), bool)
  for scale in range(resume_scale or 0, num_scales):
    if num_scales > 1:
      h, w = members[0].scale_hws[scale]
      r.log(f'scale {scale + 1}/{num_scales}: {w}x{h} px')
    problem = problem_lib.build_problem(spec, members, scale, params, r.log,
                                        start_rgb=previous)
    init_fn, chunk_fn, terms_fn = r.compiled(mesh, len(members), scale)
    batched = NamedSharding(mesh, P('members'))
    replicated = NamedSharding(mesh, P())
    args = (jax.tree.map(lambda v: _put(v, replicated), problem.params),
            jax.tree.map(lambda v: _put(v, replicated), problem.shared),
            jax.tree.map(lambda v: _put(v, batched), problem.per_member),
            jax.tree.map(lambda v: _put(v, batched), problem.weights))
    t0, compiles = time.perf_counter(), runtime.compile_counts()
    state = init_fn(_put(problem.x0, batched), *args)
    _wait_in_python(state.value)
    start_seconds = time.perf_counter() - t0
    r.log(f'compiled and evaluated the start point'
          f'{"s" if len(members) > 1 else ""} in {start_seconds:.1f}s'
          + (f' (loss {float(_host(state.value)[0]):.4g})'
             if len(members) == 1 else '')
          + f'; {runtime.describe_compiles(compiles)}')
    if resume_scale == scale:
      state = load_state(spec.workdir / spec_lib.STATE_FILE, state)
      r.log(f'resuming {spec.workdir} at iteration '
            f'{int(_host(state.iteration).max())}')
    state = _chunks(r, members, problem, state, chunk_fn, terms_fn, args,
                    replicated, call_index, scale, stop, start_seconds)
    diverged |= _host(state.status) == optimize.NONFINITE
    if diverged.all():
      break
    # The next scale starts from this result, upsampled. In luminance mode
    # that is the optimised luminance image, not the recoloured picture.
    previous = jnp.clip(vgg.deprocess(jnp.asarray(_host(state.x))), 0.0, 1.0)
  return state, problem, diverged, scale


def _chunks(r: _Run, members, problem, state, chunk_fn, terms_fn, args,
            replicated: NamedSharding, call_index: int, scale: int,
            stop: _StopRequests, start_seconds: float):
  """The chunks of one scale: optimise, log, snapshot, save; returns the state.

  `start_seconds` (compiling and one evaluation) bounds the first chunk's
  length until a chunk has been timed.
  """
  spec, total = r.spec, r.spec.scale_iterations[scale]
  num_scales = len(members[0].scale_hws)
  scalar = lambda n: _put(np.int32(n), replicated)
  # Compiled before the clock starts, so that the chunks' seconds (the ETA,
  # losses.jsonl, the benchmark) are the optimisation's alone.
  chunk_fn.lower(state, scalar(1), scalar(0), *args).compile()
  terms_fn.lower(state.x, *args).compile()
  t_start = time.perf_counter()
  it_start = int(_host(state.iteration).max())
  evals_start = _host(state.evaluations).sum()
  # Padding copies repeat a member: each member is reported from its first slot.
  first_slots: dict[int, tuple[int, spec_lib.Member]] = {}
  for slot, m in enumerate(members):
    first_slots.setdefault(m.index, (slot, m))
  seconds_per_iteration = start_seconds
  limit = max(spec.evaluation_budgets, default=np.iinfo(np.int32).max)
  it, evals = _host(state.iteration), _host(state.evaluations)
  running = ((_host(state.status) == optimize.RUNNING) & (it < total)
             & (evals < limit))
  while running.any():
    # Running members move in step: they share the iteration count.
    current = int(it[running].max())
    # Processes time their chunks apart, but must run the same steps.
    steps = chunk_steps(current, total, spec.snapshot_every,
                        seconds_per_iteration if jax.process_count() == 1
                        else 0.0)
    budget = min((b for b in spec.evaluation_budgets
                  if b > evals[running].min()), default=limit)
    t_chunk = time.perf_counter()
    state = chunk_fn(state, scalar(steps), scalar(budget), *args)
    _wait_in_python(state.iteration)
    seconds_per_iteration = (time.perf_counter() - t_chunk) / steps
    terms = {k: _host(v) for k, v in terms_fn(state.x, *args).items()}
    elapsed = time.perf_counter() - t_start
    it, evals = _host(state.iteration), _host(state.evaluations)
    done = int(it.max())
    running = ((_host(state.status) == optimize.RUNNING) & (it < total)
               & (evals < limit))
    # A chunk cut short for time saves the state but writes no PNG (30 MB
    # at 4096 px): snapshots stay every snapshot_every iterations.
    snapshot = (done % spec.snapshot_every == 0 or not running.any()
                or bool(stop.signal_name))
    # _host gathers across processes: every process takes part.
    pictures = problem.output_rgb(jnp.asarray(_host(state.x))) \
        if snapshot else None
    for slot, m in first_slots.values():
      row = {'scale': scale + 1, 'iteration': int(it[slot]),
             'evaluations': int(evals[slot]),
             **{k: float(v[slot]) for k, v in terms.items()},
             'seconds': round(elapsed, 3)}
      r.rows.append({'member': m.index, **row} if spec.sweep else row)
      if pictures is not None and r.writer:
        image_lib.save_png(r.snapshot_path(m, int(it[slot]), scale),
                           pictures[slot], r.metadata[m.index])
    r.write_text('losses.jsonl', ''.join(json.dumps(x) + '\n' for x in r.rows))
    rate = (evals.sum() - evals_start) / elapsed if elapsed > 0 else float('nan')
    per_iteration = elapsed / max(done - it_start, 1)
    eta = per_iteration * (total - done)
    where = f'scale {scale + 1}/{num_scales} ' if num_scales > 1 else ''
    if scale + 1 < num_scales:
      # Later scales, guessed from this one: time grows with the pixel count
      # and with the memory path's repeated work (4096 px on tiles here).
      def cost(k: int) -> float:
        hw = members[0].scale_hws[k]
        return float(np.prod(hw)) * spec.scale_loss_specs[k].relative_cost(hw)
      later = sum(spec.scale_iterations[k] * cost(k) / cost(scale)
                  for k in range(scale + 1, num_scales))
      eta_text = (f'ETA {format_seconds(eta)} (all scales ~'
                  f'{format_seconds(eta + per_iteration * later)})')
    else:
      eta_text = f'ETA {format_seconds(eta)}'
    if spec.sweep:
      r.log(f'{where}members {members[0].index}-{members[-1].index}  iter '
            f'{done:>5}/{total}  evals {int(evals.min())}-{int(evals.max())}  '
            f'{rate:.2f} evals/s  {eta_text}')
    else:
      r.log(f'{where}iter {done:>5}/{total}  evals {int(evals[0]):>5}  total '
            f'{terms["total"][0]:.4g}  content {terms["content"][0]:.4g}  style '
            f'{terms["style"][0]:.4g}  tv {terms["tv"][0]:.4g}  {rate:.2f} '
            f'evals/s  {eta_text}')
    more_to_do = done < total or scale + 1 < num_scales
    r.save(state, call_index, scale, force=bool(stop.signal_name))
    if stop.signal_name and more_to_do:
      latest = r.snapshot_path(members[0], done, scale)
      raise Interrupted(
          f'stopped by {stop.signal_name} at iteration {done}: the latest '
          f'image is {latest}; continue with the same command plus '
          f'--config.resume={spec.workdir}')
  return state


def _finish_call(r: _Run, members, state, problem, diverged, scale: int
                 ) -> None:
  """Writes each member's result (once; padding copies are skipped)."""
  images = problem.output_rgb(jnp.asarray(_host(state.x)))
  iteration, status = _host(state.iteration), _host(state.status)
  devices = _slot_devices(state.x)
  last = {row.get('member', 0): row for row in r.rows}
  per_scale = lambda index: [  # each scale's last row of member `index`
      row for row in {(x['scale'], x.get('member', 0)): x
                      for x in r.rows}.values() if row.get('member', 0) == index]
  for slot, m in enumerate(members):
    if m.index in r.done:
      continue
    name = STATUS[int(status[slot])] if not diverged[slot] else 'diverged'
    row = last.get(m.index, {})
    r.done[m.index] = {
        'member': m.index, 'file': m.file, 'values': m.values,
        **{k: row.get(k, float('nan')) for k in ('content', 'style', 'tv', 'total')},
        'iterations': sum(x['iteration'] for x in per_scale(m.index)),
        'evaluations': sum(x['evaluations'] for x in per_scale(m.index)),
        'status': name, 'device': devices[slot]}
    if not r.writer:
      continue
    if name == 'diverged' and not r.spec.sweep:
      # The loop never hands back a non-finite image: state.x is the last
      # good one.
      kept = r.snapshot_path(m, int(iteration[slot]), scale)
      image_lib.save_png(kept, images[slot], r.metadata[m.index])
      r.log(f'error: the loss became NaN or infinite after iteration '
            f'{int(iteration[slot])}; the last finite image is {kept}. Lower '
            'learning_rate (Adam) or the loss weights, or use optimizer=lbfgs.')
      continue
    image_lib.save_png(r.workdir / m.file, images[slot], r.metadata[m.index])
    if name == 'converged' and int(status[slot]) == optimize.LINESEARCH_FAILED \
        and not r.spec.sweep:
      r.log(f'stopped at iteration {int(iteration[slot])}: the line search '
            'found no lower loss (converged to float32 precision); keeping '
            'the result')

