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
keeps its last finite image. A run may also stop at loss-evaluation budgets
(`RunSpec.evaluation_budgets`, the benchmark's).

Beside the loop: the compiled programs (`programs`), what is written and in
which format (`records`), the state file (`run_state`), Ctrl-C (`signals`)
and the log lines (`progress`).

Workdir layout (a single run / a sweep):
  config.json        the config, members, weights and library versions
  losses.jsonl       one row per chunk (and member): iteration, evaluations,
                     loss terms, seconds
  snapshots/[<member>/][scaleK_]iter_NNNNNN.png
  final.png / member_NN_<field>=<value>....png   the results; each PNG's text
                     chunks hold its single-run config (run.py --config=<PNG>)
  contact_sheet.png, results.jsonl   (sweeps) every member, and its row
  state.npz          while unfinished: the optimiser state (no pickles)
  .nst_jax.lock      while running: the claim on the workdir (`workdir`)
"""

import collections
import contextlib
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
from nst_jax import optimize
from nst_jax import phases
from nst_jax import problem as problem_lib
from nst_jax import programs
from nst_jax import progress
from nst_jax import records
from nst_jax import run_state
from nst_jax import runtime
from nst_jax import signals
from nst_jax import spec as spec_lib
from nst_jax import sweep
from nst_jax import vgg
from nst_jax import weights as weights_lib
from nst_jax import workdir as workdir_lib
from nst_jax.errors import UserError
from nst_jax.programs import host, put
from nst_jax.signals import Interrupted

Log = Callable[[str], Any]
# member_inputs(members, (H, W)) -> (start RGB float32[M, H, W, 3] in [0, 1]
# or None for config.init, {key: per-member targets, leading axis M}).
MemberInputs = Callable[[Sequence[spec_lib.Member], tuple[int, int]],
                        tuple[Any, dict]]
STATUS = {optimize.RUNNING: 'finished', optimize.CONVERGED: 'converged',
          optimize.LINESEARCH_FAILED: 'converged',
          optimize.NONFINITE: 'diverged'}
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


class _Run:
  """What one `run` call threads through its loops: the spec, the log, the
  rows written so far, the finished members and the compiled programs."""

  def __init__(self, spec: spec_lib.RunSpec, log: Log, metadata: dict,
               member_inputs: MemberInputs | None = None,
               programs_cache: dict | None = None):
    self.spec, self.log, self.metadata = spec, log, metadata  # PNG text chunks
    self.member_inputs = member_inputs
    self.writer = jax.process_index() == 0 and spec.workdir is not None
    self.rows: list[dict] = []  # losses.jsonl
    self.done: dict[int, dict] = {}  # results.jsonl rows by member
    self.traces: collections.Counter = collections.Counter()
    self.last_save = (time.perf_counter(), 0.0)  # (when, seconds it took)
    self.claim = workdir_lib.Claim(spec.workdir, None, kept=True)  # see run
    # By (members per call, loss spec): scales of one path share programs
    # (and runs that pass one `programs_cache`, e.g. a video's frames).
    self.programs: dict[tuple, tuple] = (
        {} if programs_cache is None else programs_cache)

  def compiled(self, mesh: Mesh, num_members: int, scale: int) -> tuple:
    key = (num_members, self.spec.scale_loss_specs[scale],
           self.spec.optimizer_spec, self.spec.batch, tuple(mesh.devices.flat))
    if key not in self.programs:
      self.programs[key] = programs.compiled_programs(
          key[1], self.spec.optimizer_spec, mesh, num_members, self.traces,
          batch=self.spec.batch)
    return self.programs[key]

  def write_text(self, name: str, text: str) -> None:
    if self.writer:
      with phases.phase('writing'):
        files.atomic_write_text(self.spec.workdir / name, text)

  def save_png(self, path, image, member: spec_lib.Member) -> None:
    if self.writer:
      with phases.phase('writing'):
        image_lib.save_png(path, image, self.metadata[member.index])

  def save(self, state, call: int, scale: int, force: bool = False,
           between_calls: bool = False) -> None:
    """Saves the resumable state unless saving would cost > 5% of the time.

    `between_calls`: `call` has not started; `state` is the finished call's,
    kept for the file's format but not loaded on resuming.
    """
    if self.spec.workdir is None:
      return
    now = time.perf_counter()
    when, took = self.last_save
    if force or now - when >= 20 * took:
      with phases.phase('writing'):
        run_state.save_state(
            self.spec.workdir / run_state.STATE_FILE, state,
            {'call': call, 'scale': scale, 'between_calls': between_calls,
             'rows': self.rows,
             'done': {str(k): v for k, v in self.done.items()}})
      self.claim.kept = True
      self.last_save = (time.perf_counter(), time.perf_counter() - now)


def run(spec: spec_lib.RunSpec, log: Log = print, *,
        member_inputs: MemberInputs | None = None,
        programs_cache: dict | None = None) -> dict[str, Any]:
  """Makes every member of `spec`; writes everything under `spec.workdir`.

  `member_inputs` gives each call's members their start images (at the
  first scale; None: config.init) and extra per-member targets (e.g. the
  temporal term's, `nst_jax.video`), at each scale's size; it must give the
  same on a resumed run. `programs_cache` (a dict kept by the caller) reuses
  compiled programs across runs of the same loss, optimiser and batch.

  Returns:
    {'workdir': Path, 'members': [per member: 'member', 'file' (Path),
     'values', loss terms, 'iterations', 'evaluations', 'status' ('finished',
     'converged' or 'diverged'), 'device'], 'sheet': Path | None, 'devices',
     'sharding': the last call's image sharding, 'traces': {name: count},
     'seconds', 'rows': the losses.jsonl rows, 'stopped_by': the signal
     ('SIGINT', 'SIGTERM') that came during the last chunk, which the run
     then finished, or None; a caller with more to do stops there}.
    Only process 0 writes files; every process returns the same.

  Raises:
    Interrupted: SIGINT/SIGTERM; the state was saved for `config.resume`.
    UserError: another run holds the workdir, the start point's loss is not
      finite, or a write failed (saying what was kept). A run that fails
      before its first state save leaves nothing behind (`workdir.claim`).
  """
  t0, compiles = time.perf_counter(), runtime.compile_counts()
  if jax.process_index() != 0:
    log = lambda *_: None  # one voice: process 0 prints (and writes)
  params, weights_info = _load_params(spec, log)
  sha = weights_info['params_sha256']
  # A single run uses one device: padding it to every device would only
  # repeat it.
  devices = jax.devices() if spec.sweep else jax.devices()[:1]
  mesh = Mesh(np.array(devices), ('members',))
  calls = calls_of(spec, len(devices))
  versions = records.library_versions()
  r = _Run(spec, log, {m.index: records.png_metadata(m.config, sha, versions)
                       for m in spec.members}, member_inputs, programs_cache)
  for line in progress.upscale_warnings(spec):
    log(line)
  claim = workdir_lib.claim(spec.workdir, resume=spec.resume) if r.writer \
      else contextlib.nullcontext(r.claim)
  with claim as r.claim:
    first_call, first_scale = _begin(r, weights_info, versions, devices)
    if spec.sweep:
      log(progress.sweep_line(spec, devices, calls))

    sharding = None
    with signals.StopRequests(log, lambda: _on_quit(r.claim)) as stop:
      for call_index, call in enumerate(calls[first_call:], first_call):
        members = [spec.members[i] for i in call]
        resume_scale = first_scale if spec.resume and call_index == first_call \
            else None
        state, problem, diverged, scale = _optimise_call(
            r, members, call_index, params, mesh, stop, resume_scale)
        sharding = state.x.sharding
        _finish_call(r, members, state, problem, diverged, scale)
        r.save(state, call_index + 1, 0, force=call_index + 1 < len(calls),
               between_calls=True)
        if stop.signal_name and call_index + 1 < len(calls):
          # The next call would run a whole chunk before it could stop.
          raise Interrupted(
              f'stopped by {stop.signal_name} after {call_index + 1} of '
              f'{len(calls)} compiled calls: their images are in '
              f'{spec.workdir}; continue with '
              f'{workdir_lib.continue_command(spec.workdir)}')
      stopped_by = stop.signal_name

    rows, sheet = _write_results(r, sha, versions)
  for line in progress.result_lines(spec, rows, sheet, time.perf_counter() - t0,
                                   runtime.describe_compiles(compiles)):
    log(line)
  log(phases.summary())
  # The run's account ends with its line: a caller that runs the engine again
  # (a clip's next unit) gets that run's own line, not the process's so far.
  phases.start_run()
  return {'workdir': spec.workdir, 'sheet': sheet,
          'members': [dict(row, file=spec.workdir / row['file'] if spec.workdir
                           else row['file']) for row in rows],
          'devices': [str(d) for d in devices], 'sharding': sharding,
          'traces': dict(r.traces), 'seconds': time.perf_counter() - t0,
          'rows': r.rows, 'stopped_by': stopped_by}


def _load_params(spec: spec_lib.RunSpec, log: Log) -> tuple[dict, dict]:
  """The prepared VGG19 params and their weights record (spec.weights, read
  and hashed once by spec.parse, or the default file)."""
  with phases.phase('device start'):
    jax.devices()
  with phases.phase('weights'):
    params, weights_info = spec.weights or weights_lib.load_vgg19_params(
        None, log=log)
    params = jax.block_until_ready(vgg.prepare_params(params))
  log(f"weights: {weights_info['path']} (source {weights_info['source']}, "
      f"params sha256 {weights_info['params_sha256'][:16]}...)")
  return params, weights_info


def _begin(r: _Run, weights_info: dict, versions: dict,
           devices: Sequence[Any]) -> tuple[int, int | None]:
  """Loads a resumed run's rows and finished members, or writes a new run's
  config.json; returns the (call, scale) to start at (scale None: the call
  starts afresh)."""
  spec = r.spec
  if spec.resume:
    meta = run_state.read_state_meta(spec.workdir / run_state.STATE_FILE)
    r.rows = meta['rows']
    r.done = {int(k): v for k, v in meta['done'].items()}
    # A state saved between calls is the finished call's: the next call
    # starts afresh.
    return meta['call'], None if meta.get('between_calls') else meta['scale']
  if r.writer:
    if spec.config.resume:
      r.log(f'{spec.workdir} holds no saved state (its run stopped before its '
            'first save): starting it over')
    (spec.workdir / 'snapshots').mkdir(parents=True, exist_ok=True)
    r.write_text('config.json', records.config_record(
        spec, weights_info, versions, [str(d) for d in devices],
        jax.process_count()))
  return 0, 0


def _write_results(r: _Run, sha: str, versions: dict
                   ) -> tuple[list[dict], Path | None]:
  """Every member's results.jsonl row and, for a sweep, results.jsonl and
  the contact sheet; removes the state file of the finished run."""
  spec = r.spec
  rows = [r.done[m.index] for m in spec.members]
  sheet = None
  if spec.sweep and r.writer:
    r.write_text('results.jsonl', records.jsonl(rows))
    sheet = spec.workdir / 'contact_sheet.png'
    with phases.phase('writing'):
      image_lib.save_png(sheet, sweep.sheet_for(spec, rows, spec.workdir),
                         records.png_metadata(spec.config, sha, versions))
  if r.writer:
    (spec.workdir / run_state.STATE_FILE).unlink(missing_ok=True)
  return rows, sheet


def _on_quit(claim: workdir_lib.Claim) -> str:
  """StopRequests' words on what a run quitting at once leaves."""
  if claim.workdir is None:  # nothing written (the benchmark)
    return ''
  if claim.kept:
    return ('; continue from the state saved last with '
            f'{workdir_lib.continue_command(claim.workdir)}')
  claim.rollback()
  return ('; no state was saved yet, so nothing was kept: the same command '
          'starts the run again')


def _optimise_call(r: _Run, members: Sequence[spec_lib.Member], call_index: int,
                   params: dict, mesh: Mesh, stop: signals.StopRequests,
                   resume_scale: int | None):
  """Every scale of one compiled call, coarse to fine.

  Returns:
    (state, problem, diverged[M], the index of the last scale optimised).
  """
  spec = r.spec
  num_scales = len(members[0].scale_hws)
  previous = None
  diverged = np.zeros(len(members), bool)
  batched = NamedSharding(mesh, P('members'))
  replicated = NamedSharding(mesh, P())
  for scale in range(resume_scale or 0, num_scales):
    if num_scales > 1:
      h, w = members[0].scale_hws[scale]
      r.log(f'scale {scale + 1}/{num_scales}: {w}x{h} px')
    with phases.phase('images'):  # and, inside, 'targets'
      start, extra_targets = (r.member_inputs(members, members[0].scale_hws[
          scale]) if r.member_inputs else (None, {}))
      problem = problem_lib.build_problem(
          spec, members, scale, params, r.log,
          start_rgb=previous if previous is not None else start,
          extra_targets=extra_targets)
    init_fn, chunk_fn, terms_fn = r.compiled(mesh, len(members), scale)
    args = (jax.tree.map(lambda v: put(v, replicated), problem.params),
            jax.tree.map(lambda v: put(v, replicated), problem.shared),
            jax.tree.map(lambda v: put(v, batched), problem.per_member),
            jax.tree.map(lambda v: put(v, batched), problem.weights))
    t0, compiles = time.perf_counter(), runtime.compile_counts()
    with phases.phase('compile'):
      state = init_fn(put(problem.x0, batched), *args)
      signals.wait_in_python(state.value)
    _check_start(members, host(state.value))
    start_seconds = time.perf_counter() - t0
    r.log(f'compiled and evaluated the start point'
          f'{"s" if len(members) > 1 else ""} in {start_seconds:.1f}s'
          + (f' (loss {float(host(state.value)[0]):.4g})'
             if len(members) == 1 else '')
          + f'; {runtime.describe_compiles(compiles)}')
    if resume_scale == scale:
      state = run_state.load_state(spec.workdir / run_state.STATE_FILE, state)
      r.log(f'resuming {spec.workdir} at iteration '
            f'{int(host(state.iteration).max())}')
    scalar = lambda n: put(np.int32(n), replicated)
    # Compiled before the clock starts, so that the chunks' seconds (the ETA,
    # losses.jsonl, the benchmark) are the optimisation's alone.
    with phases.phase('compile'):
      chunk_fn.lower(state, scalar(1), scalar(0), *args).compile()
      terms_fn.lower(state.x, *args).compile()
    with phases.phase('optimisation'):
      state = _chunks(r, members, problem, state,
                      lambda s, n, budget: chunk_fn(s, scalar(n),
                                                    scalar(budget), *args),
                      lambda x: {k: host(v)
                                 for k, v in terms_fn(x, *args).items()},
                      call_index, scale, stop, start_seconds)
    diverged |= host(state.status) == optimize.NONFINITE
    if diverged.all():
      break
    # The next scale starts from this result, upsampled. In luminance mode
    # that is the optimised luminance image, not the recoloured picture.
    previous = jnp.clip(vgg.deprocess(jnp.asarray(host(state.x))), 0.0, 1.0)
  return state, problem, diverged, scale


def _check_start(members: Sequence[spec_lib.Member], values: np.ndarray
                 ) -> None:
  """UserError unless each member's start loss (float32[M]) is finite: a
  loss weight too large for float32 would only give NaN steps."""
  for m, value in zip(members, values):
    if not np.isfinite(value):
      weights = ', '.join(f'{k}_weight={m.loss_weights[k]:g}'
                          for k in ('content', 'style', 'tv'))
      raise UserError(
          f"the start point's loss is {value} with {weights}"
          + (f' (member {m.index})' if m.values else '') + ': a weight is '
          'too large for float32 arithmetic; lower the largest of them')


def _chunks(r: _Run, members, problem, state, chunk, terms_of,
            call_index: int, scale: int, stop: signals.StopRequests,
            start_seconds: float):
  """The chunks of one scale: optimise, log, snapshot, save; returns the state.

  chunk(state, steps, max_evaluations) -> state and terms_of(x) -> {term:
  float[M]} run the compiled programs. `start_seconds` (compiling and one
  evaluation) bounds the first chunk's length until a chunk has been timed.
  """
  spec, total = r.spec, r.spec.scale_iterations[scale]
  limit = max(spec.evaluation_budgets, default=np.iinfo(np.int32).max)
  t_start = time.perf_counter()
  it_start = int(host(state.iteration).max())
  evals_start = host(state.evaluations).sum()
  # Padding copies repeat a member: each member is reported from its first slot.
  first_slots: dict[int, tuple[int, spec_lib.Member]] = {}
  for slot, m in enumerate(members):
    first_slots.setdefault(m.index, (slot, m))
  seconds_per_iteration = start_seconds
  def progress_of(state):
    it, evals = host(state.iteration), host(state.evaluations)
    running = ((host(state.status) == optimize.RUNNING) & (it < total)
               & (evals < limit))
    return it, evals, running
  it, evals, running = progress_of(state)
  while running.any():
    # Running members move in step: they share the iteration count. And
    # processes time their chunks apart, but must run the same steps.
    steps = chunk_steps(int(it[running].max()), total, spec.snapshot_every,
                        seconds_per_iteration if jax.process_count() == 1
                        else 0.0)
    budget = min((b for b in spec.evaluation_budgets
                  if b > evals[running].min()), default=limit)
    t_chunk = time.perf_counter()
    state = chunk(state, steps, budget)
    signals.wait_in_python(state.iteration)
    seconds_per_iteration = (time.perf_counter() - t_chunk) / steps
    terms = terms_of(state.x)
    elapsed = time.perf_counter() - t_start
    it, evals, running = progress_of(state)
    done = int(it.max())
    # A chunk cut short for time saves the state but writes no PNG (30 MB
    # at 4096 px): snapshots stay every snapshot_every iterations.
    snapshot = (done % spec.snapshot_every == 0 or not running.any()
                or bool(stop.signal_name))
    # host() gathers across processes: every process takes part.
    pictures = problem.output_rgb(jnp.asarray(host(state.x))) \
        if snapshot else None
    for slot, m in first_slots.values():
      r.rows.append(records.loss_row(
          spec, m, scale, int(it[slot]), int(evals[slot]),
          {k: float(v[slot]) for k, v in terms.items()}, elapsed))
      if pictures is not None and r.writer:
        r.save_png(records.snapshot_path(spec, m, int(it[slot]), scale),
                   pictures[slot], m)
    r.write_text('losses.jsonl', records.jsonl(r.rows))
    rate = (evals.sum() - evals_start) / elapsed if elapsed > 0 else float('nan')
    eta = progress.eta_text(spec, members[0].scale_hws, scale, done,
                            elapsed / max(done - it_start, 1))
    r.log(progress.progress_line(spec, members, scale, done, evals, terms,
                                 rate, eta))
    r.save(state, call_index, scale, force=bool(stop.signal_name))
    more_to_do = done < total or scale + 1 < len(members[0].scale_hws)
    if stop.signal_name and more_to_do:
      latest = records.snapshot_path(spec, members[0], done, scale)
      raise Interrupted(
          f'stopped by {stop.signal_name} at iteration {done}: the latest '
          f'image is {latest}; continue with '
          f'{workdir_lib.continue_command(spec.workdir)}')
  return state


def _finish_call(r: _Run, members, state, problem, diverged, scale: int
                 ) -> None:
  """Writes each member's result (once; padding copies are skipped)."""
  images = problem.output_rgb(jnp.asarray(host(state.x)))
  iteration, status = host(state.iteration), host(state.status)
  devices = programs.slot_devices(state.x)
  for slot, m in enumerate(members):
    if m.index in r.done:
      continue
    name = STATUS[int(status[slot])] if not diverged[slot] else 'diverged'
    r.done[m.index] = records.result_row(m, r.rows, name, devices[slot])
    if not r.writer:
      continue
    if name == 'diverged' and not r.spec.sweep:
      # The loop never hands back a non-finite image: state.x is the last
      # good one.
      kept = records.snapshot_path(r.spec, m, int(iteration[slot]), scale)
      r.save_png(kept, images[slot], m)
      r.log(f'error: the loss became NaN or infinite after iteration '
            f'{int(iteration[slot])}; the last finite image is {kept}. Lower '
            'learning_rate (Adam) or the loss weights, or use optimizer=lbfgs.')
    else:
      r.save_png(r.spec.workdir / m.file, images[slot], m)
      if int(status[slot]) == optimize.LINESEARCH_FAILED and not r.spec.sweep:
        r.log(f'stopped at iteration {int(iteration[slot])}: the line search '
              'found no lower loss (converged to float32 precision); keeping '
              'the result')
