"""Ctrl-C and SIGTERM during a run: finish the chunk, save, stop cleanly.

No JAX here: scripts import `Interrupted` before the runtime is configured.
"""

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any


class Interrupted(Exception):
  """SIGINT/SIGTERM arrived; the run saved its state and stopped cleanly."""


class StopRequests:
  """Turns SIGINT/SIGTERM into a flag (`signal_name`) checked between chunks.

  The first signal lets the current chunk finish (it is compiled code and
  cannot be stopped half-way without losing it); a second one exits at once,
  leaving the state saved last to resume from: `on_quit()` tidies the workdir
  and says what is left, e.g. '; continue with ...'.
  """

  def __init__(self, log: Callable[[str], Any],
               on_quit: Callable[[], str] | None = None):
    self.signal_name = None
    self._log = log
    self._on_quit = on_quit
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
      where = self._on_quit() if self._on_quit else ''
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


def wait_in_python(x, poll_seconds: float = 0.05) -> None:
  """Waits for an asynchronously dispatched jax.Array x in short sleeps.

  Python runs signal handlers only between bytecodes: a main thread blocked
  in a compiled chunk (minutes at 4096 px) would hear Ctrl-C only when the
  chunk ends. Sleeping in Python keeps the handlers prompt, so a second
  signal quits at once.
  """
  while not x.is_ready():
    time.sleep(poll_seconds)
