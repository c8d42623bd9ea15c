"""Where a run's wall time goes, for the log's last line.

The code that does the work names its phase (`with phase('images'):`); time
is given to the innermost phase open, so nested phases never count twice.
`start_run` begins a run's account: the first run of a process also gets
'imports', everything from the process's start until then (Python, JAX and
nst_jax imports, loading the config); a later run in the same process
(tests, compare, the benchmark, each unit of a clip) starts from zero:
`engine.run` starts the next account after its line. `summary` is the line:

  time: imports 2.1s, device start 0.1s, weights 0.3s, ... (of 9.4s)

Phases (PHASES): imports, config (spec.parse, weights excluded), device
start (the backend's first use), weights (reading, hashing, preparing),
images, targets, compile (tracing, compiling or reading the persistent
cache; with the start point's one evaluation), optimisation (the chunks,
with their loss-term evaluations and progress), writing (PNGs, JSON lines,
the state file); 'other' is what none of them covers.
"""

import collections
import contextlib
import os
import time
from collections.abc import Iterator

PHASES = ('imports', 'config', 'device start', 'weights', 'images', 'targets',
          'compile', 'optimisation', 'writing')

_totals: collections.Counter = collections.Counter()
_open: list[str] = []  # the phases open, innermost last
_clock = {'last': time.perf_counter(), 'origin': None}


def _process_age() -> float:
  """Seconds since this process started (Linux; else since this import)."""
  try:
    with open('/proc/self/stat') as f:
      start_ticks = float(f.read().rsplit(')', 1)[1].split()[19])
    with open('/proc/uptime') as f:
      uptime = float(f.read().split()[0])
    return max(uptime - start_ticks / os.sysconf('SC_CLK_TCK'), 0.0)
  except (OSError, ValueError, IndexError):
    return time.perf_counter() - _IMPORTED


_IMPORTED = time.perf_counter()


def _attribute() -> None:
  """Gives the time since the last event to the innermost open phase."""
  now = time.perf_counter()
  if _open:
    _totals[_open[-1]] += now - _clock['last']
  _clock['last'] = now


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
  """Times the block as `name` (one of PHASES), minus the phases inside it."""
  _attribute()
  _open.append(name)
  try:
    yield
  finally:
    _attribute()
    _open.pop()


def start_run() -> None:
  """Begins a run's account (see the module docstring)."""
  first = _clock['origin'] is None
  _totals.clear()
  now = time.perf_counter()
  if first:
    age = _process_age()
    _totals['imports'] = age
    _clock['origin'] = now - age
  else:
    _clock['origin'] = now
  _clock['last'] = now


def totals() -> dict[str, float]:
  """{phase: seconds} of the run so far, 'other' and 'total' included."""
  _attribute()
  origin = _clock['origin']
  total = time.perf_counter() - (origin if origin is not None else _IMPORTED)
  out = {name: _totals[name] for name in PHASES if name in _totals}
  out['other'] = max(total - sum(out.values()), 0.0)
  out['total'] = total
  return out


def summary() -> str:
  """'time: imports 2.1s, ..., other 0.2s (of 9.4s)': the run's phases."""
  spent = totals()
  total = spent.pop('total')
  return ('time: ' + ', '.join(f'{name} {seconds:.1f}s'
                               for name, seconds in spent.items())
          + f' (of {total:.1f}s)')
