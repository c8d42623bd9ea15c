"""Process-wide JAX setup: compilation cache, XLA:GPU flags, compiles, hosts.

Most of a cold GPU run is compiling (~48 s of 71 s, README command, one H100):
`configure()` keeps programs and autotune results in a per-user cache (whoever
can write to it can make this process run code)."""

import dataclasses
import importlib.metadata
import os
from pathlib import Path
import re
import subprocess
import sys
import threading

import jax
from jax import monitoring
from jax.experimental.compilation_cache import compilation_cache as jax_cache

from nst_jax.errors import UserError

CACHE_ENV = 'NST_COMPILATION_CACHE'
GPU_FLAGS_ENV = 'NST_XLA_GPU_FLAGS'  # 'off' leaves out GPU_COMPILE_FLAGS.
COORDINATOR_ENV = 'NST_COORDINATOR'
NUM_PROCESSES_ENV = 'NST_NUM_PROCESSES'
PROCESS_ID_ENV = 'NST_PROCESS_ID'

# Autotuning Triton GEMM tilings is the slowest part of XLA:GPU compiles, and
# cuBLAS serves this model's few matmuls (the Gram matrices) well. Measured on
# one H200 (jax 0.11.2, scripts/gpu_check.sh): the default loss at 512 px
# compiled in 9.6 s without Triton GEMM; with XLA's defaults (Triton GEMM on,
# nondeterministic ops allowed) the same fresh process had not compiled and
# run 30 iterations after 60 s, its autotuner logging "Delay kernel timed
# out".
GPU_COMPILE_FLAGS = ('--xla_gpu_enable_triton_gemm=false',)
# Same seed, same bytes: kernels without atomics (scatter, some cuDNN
# algorithms) and no autotuning, whose timed picks can differ between
# compiles. Measured on one H200 (jax 0.11.2, gpu_check.sh): with autotuning
# off the default loss at 512 px compiled in 9.9 s and ran 4.7 ms/iteration,
# against 9.6 s and 5.2 ms with it on (the narrower second flag alone), so
# determinism costs nothing measurable there. The second flag stands in
# should a release drop the first.
GPU_DETERMINISM_FLAGS = ('--xla_gpu_deterministic_ops=true',
                         '--xla_gpu_exclude_nondeterministic_ops=true')


@dataclasses.dataclass(frozen=True)
class Settings:
  """What `configure()` set up: the cache folder (None: off), the flags added
  to $XLA_FLAGS and those left out as unknown to this XLA."""
  cache_dir: Path | None
  xla_flags_added: tuple[str, ...]
  xla_flags_unknown: tuple[str, ...]

  def describe(self) -> str:
    """One line for a run's log: 'compilation cache: /home/u/...; ...'."""
    added, unknown = map(' '.join, (self.xla_flags_added,
                                    self.xla_flags_unknown))
    return '; '.join(filter(None, (
        f'compilation cache: {self.cache_dir or "off"}',
        added and f'XLA flags added: {added}',
        unknown and f'unknown to this XLA, left out: {unknown}')))


def resolve_cache_dir(compilation_cache: str | os.PathLike | None = None
                      ) -> Path | None:
  """The absolute cache folder, None for 'off': the argument, else
  $NST_COMPILATION_CACHE, else $XDG_CACHE_HOME (or ~/.cache)/nst_jax/jax."""
  choice = str(compilation_cache or '') or os.environ.get(CACHE_ENV, '')
  if choice.strip().lower() == 'off':
    return None
  base = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
  return Path(choice or Path(base) / 'nst_jax' / 'jax').expanduser().resolve()


def merge_xla_flags(existing: str, wanted: tuple[str, ...]
                    ) -> tuple[str, tuple[str, ...]]:
  """(the new $XLA_FLAGS, the flags appended): `existing` plus each wanted
  flag it does not name, so the user's value always wins."""
  name = re.compile(r'-*(?:no)?(xla_[^=]*)')  # --xla_a=1, --xla_a, --noxla_a
  present = {m[1] for m in map(name.match, existing.split()) if m}
  added = tuple(f for f in wanted if name.match(f)[1] not in present)
  return ' '.join(p for p in (existing.strip(), *added) if p), added


def gpu_plugin_installed() -> bool:
  """Whether a CUDA/ROCm plugin is installed and $JAX_PLATFORMS allows it."""
  # Looks at packages only: starting a backend would read XLA_FLAGS too early.
  platforms = os.environ.get('JAX_PLATFORMS') or 'gpu'
  return bool(re.search('cuda|rocm|gpu', platforms.lower())) and any(
      re.match('jax[-_](cuda|rocm)', d.metadata['Name'] or '', re.IGNORECASE)
      for d in importlib.metadata.distributions())


def unknown_xla_flags(flags: tuple[str, ...]) -> tuple[str, ...]:
  """The flags this jaxlib's XLA does not know (RuntimeError if unsure)."""
  # XLA aborts the whole process on an unknown flag, and names change between
  # releases, so a child (~1 s) tries them: jaxlib's CPU build knows its
  # release's GPU flags too, and names every unknown one before aborting.
  child = subprocess.run(
      [sys.executable, '-c', 'import jax; jax.devices()'], check=False,
      env=dict(os.environ, XLA_FLAGS=' '.join(flags), JAX_PLATFORMS='cpu'),
      capture_output=True, text=True, timeout=120)
  match = re.search(r'Unknown flags? in XLA_FLAGS: (.*)', child.stderr)
  if child.returncode and not match:
    raise RuntimeError(f'checking XLA_FLAGS {" ".join(flags)!r} failed: '
                       f'{child.stderr[-500:]}')
  named = match.group(1).split() if match else ()
  return tuple(f for f in flags if f in named)


def configure(compilation_cache: str | os.PathLike | None = None, *,
              deterministic: bool = True) -> Settings:
  """Sets up the persistent compilation cache and, on a GPU, XLA flags.

  Call it before any JAX work: XLA reads $XLA_FLAGS when a backend starts.
  `compilation_cache` is a folder, 'off', or ''/None (see `resolve_cache_dir`;
  a second call switches folders). `deterministic` adds, on a GPU,
  `GPU_DETERMINISM_FLAGS` so the same config and seed give the same bytes
  (XLA:CPU needs nothing). Raises UserError if the folder cannot be created.
  """
  cache_dir = resolve_cache_dir(compilation_cache)
  try:
    if cache_dir:
      cache_dir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UserError(
        f'compilation cache folder {cache_dir} cannot be created ({e}): set '
        f'--config.compilation_cache or ${CACHE_ENV} to a writable folder, '
        "or to 'off'") from e
  added = unknown = ()
  if gpu_plugin_installed():
    off = os.environ.get(GPU_FLAGS_ENV, '').strip().lower() == 'off'
    wanted = (() if off else GPU_COMPILE_FLAGS) + (
        GPU_DETERMINISM_FLAGS if deterministic else ())
    unknown = unknown_xla_flags(wanted) if wanted else ()
    merged, added = merge_xla_flags(
        os.environ.get('XLA_FLAGS', ''),
        tuple(f for f in wanted if f not in unknown))
    if added:
      os.environ['XLA_FLAGS'] = merged
  jax.config.update('jax_enable_compilation_cache', bool(cache_dir))
  jax.config.update('jax_compilation_cache_dir',
                    str(cache_dir) if cache_dir else None)
  # Cache every program, however quick: a warm run then compiles nothing.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax_cache.reset_cache()  # Else a cache opened already keeps its folder.
  return Settings(cache_dir, added, unknown)


@dataclasses.dataclass(frozen=True)
class CompileCounts:
  """This process's compile totals; subtract two for what happened between:
  seconds tracing, lowering and in XLA (compiling or reading the cache), XLA
  compilations requested, and persistent-cache lookups that hit / missed."""
  compile_s: float = 0.0
  programs: int = 0
  cache_hits: int = 0
  cache_misses: int = 0

  def __sub__(self, other: 'CompileCounts') -> 'CompileCounts':
    return CompileCounts(*(a - b for a, b in zip(
        dataclasses.astuple(self), dataclasses.astuple(other))))


# jax.monitoring events (jax 0.4.30 .. 0.10.2 at least); should a later jax
# rename them, compile reports say less but nothing breaks.
_BACKEND_EVENT = '/jax/core/compile/backend_compile_duration'
_COMPILE_EVENTS = (_BACKEND_EVENT, '/jax/core/compile/jaxpr_trace_duration',
                   '/jax/core/compile/jaxpr_to_mlir_module_duration')
_CACHE_EVENTS = {'/jax/compilation_cache/cache_hits': 'cache_hits',
                 '/jax/compilation_cache/cache_misses': 'cache_misses'}
_counts_lock = threading.Lock()  # Compiles may run on several threads.
_counts = dataclasses.asdict(CompileCounts())


def _count(event: str, duration: float = 0.0, **_) -> None:
  with _counts_lock:
    if event in _CACHE_EVENTS:
      _counts[_CACHE_EVENTS[event]] += 1
    elif event in _COMPILE_EVENTS:
      _counts['compile_s'] += duration
      _counts['programs'] += event == _BACKEND_EVENT


monitoring.register_event_listener(_count)
monitoring.register_event_duration_secs_listener(_count)


def compile_counts() -> CompileCounts:
  """The totals so far; subtract an earlier value to get one step's share."""
  with _counts_lock:
    return CompileCounts(**_counts)


def describe_compiles(since: CompileCounts | None = None) -> str:
  """One line on the compiles after `since` (default: all), e.g. 'compiled in
  3.1 s (from the cache)'; or '(not in the cache yet)', '(k of n programs from
  the cache)', '(no cache)', or 'nothing compiled'."""
  delta = compile_counts() - (since or CompileCounts())
  hits, misses = delta.cache_hits, delta.cache_misses
  if delta.programs == 0 and hits + misses == 0:
    return f'nothing compiled ({delta.compile_s:.1f} s tracing)'
  source = ('no cache' if hits + misses == 0 else 'from the cache'
            if misses == 0 else 'not in the cache yet' if hits == 0
            else f'{hits} of {hits + misses} programs from the cache')
  return f'compiled in {delta.compile_s:.1f} s ({source})'


def distributed_env() -> dict[str, object] | None:
  """`jax.distributed.initialize` arguments from $NST_COORDINATOR (host:port),
  $NST_NUM_PROCESSES and $NST_PROCESS_ID; None when none is set (JAX then
  finds the cluster). Raises UserError if only some are set or one is bad."""
  names = (COORDINATOR_ENV, NUM_PROCESSES_ENV, PROCESS_ID_ENV)
  values = [os.environ.get(name, '').strip() for name in names]
  if not any(values):
    return None
  coordinator, count, index = values
  if not (re.fullmatch(r'[^\s:]+:\d{1,5}', coordinator) and count.isdecimal()
          and index.isdecimal() and int(index) < int(count)):
    raise UserError(
        ' '.join(f'${n}={v!r}' for n, v in zip(names, values))
        + ': set none, or all three: host:port, a count n >= 1 and an id in '
        '0..n-1 (e.g. NST_COORDINATOR=10.0.0.1:1234 NST_NUM_PROCESSES=2 '
        'NST_PROCESS_ID=0)')
  return {'coordinator_address': coordinator, 'num_processes': int(count),
          'process_id': int(index)}


def initialize_distributed() -> tuple[int, int]:
  """Joins this process to a multi-process JAX job, from `distributed_env()`
  or else JAX's own detection (Cloud TPU, SLURM, ...); call before device use.
  Returns (this process's index, the number of processes)."""
  # On CPU, JAX's default gloo collectives let arrays span the processes.
  jax.distributed.initialize(**(distributed_env() or {}))
  return jax.process_index(), jax.process_count()


def check_backend() -> None:
  """Raises UserError, naming what to install, when $JAX_PLATFORMS names a
  backend this machine cannot start (JAX raises a bare AssertionError for a
  missing CUDA plugin, a 60-line RuntimeError for TPU)."""
  try:
    jax.devices()
  except Exception as e:  # pylint: disable=broad-except
    platforms = os.environ.get('JAX_PLATFORMS', '')
    wanted = platforms.lower()
    reason = re.sub(r'\s*\(set JAX_PLATFORMS=.*', '', ' '.join(str(e).split()))
    reason = reason if len(reason) <= 120 else reason[:117] + '...'
    fix = 'name cpu, cuda or tpu'
    if ('cuda' in wanted or 'gpu' in wanted) and not gpu_plugin_installed():
      reason, fix = 'no CUDA plugin is installed', (
          'install it with pip install -U "jax[cuda13]" ("jax[cuda12]" for '
          'older drivers)')
    elif 'cuda' in wanted or 'gpu' in wanted:
      fix = 'check that nvidia-smi sees a GPU'
    elif 'tpu' in wanted:
      fix = 'run on a TPU VM, with pip install -U "jax[tpu]"'
    elif 'rocm' in wanted:
      fix = "install JAX's ROCm plugin (see JAX's installation guide)"
    raise UserError(f'JAX_PLATFORMS={platforms}: this machine cannot start '
                    f'that backend ({reason or type(e).__name__}); {fix}, or '
                    'unset JAX_PLATFORMS to run on what is there') from None
