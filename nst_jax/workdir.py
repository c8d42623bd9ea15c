"""A run's workdir: one run's for the run's life, left tidy however it ends.

`claim` takes an exclusive `fcntl.flock` on WORKDIR/.nst_jax.lock, which
holds the run's pid, host, start time and command, and keeps it until the run
ends. The kernel drops the lock when the process ends, even by SIGKILL, so a
dead run's claim is never in the way, and a second run into the workdir, even
one started at the same moment, is refused in one line naming the holder.
Holding it, the claim checks that no earlier run's state or results are there
(`earlier_run`) and removes the temporaries of a write that was killed.

A run that ends before its first saved state leaves the workdir as it found
it (`Claim.rollback`); a finished one leaves no lock or temporary file.
"""

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import json
import os
from pathlib import Path
import re
import shlex
import socket
import sys

from nst_jax.errors import UserError
from nst_jax.run_state import STATE_FILE

LOCK_FILE = '.nst_jax.lock'
# What a run writes before its first state save (the lock aside).
_EARLY_FILES = ('config.json', 'losses.jsonl')
# files.atomic_write's temporaries: .<name>.<8 hex digits>.tmp
_TEMPORARY = re.compile(r'\..+\.[0-9a-f]{8}\.tmp')


def earlier_run(workdir: Path) -> str | None:
  """The file of an earlier run in `workdir` that a new run would overwrite
  (its state, losses, a picture or its config), or None: there is none, or
  only the config.json and lock of a run killed before its first state
  save."""
  if not (workdir / 'config.json').is_file():
    return None
  found = sorted(p.name for p in workdir.glob('*.png'))
  found += [name for name in (STATE_FILE, 'losses.jsonl', 'results.jsonl')
            if (workdir / name).exists()]
  found += [p.name for p in (workdir / 'snapshots').rglob('*.png')]
  # Only a killed run leaves its lock: a config.json without one is no
  # leftover of ours to replace.
  found += [] if (workdir / LOCK_FILE).exists() else ['config.json']
  return found[0] if found else None


def continue_command(workdir: Path) -> str:
  """The command that continues the run saved in `workdir`: this process's
  own with --config.resume=<workdir> (any earlier one replaced)."""
  argv = [a for a in getattr(sys, 'orig_argv', ())
          if not re.match(r'--?config\.resume(=|$)', a)]
  if not any(a.startswith('--config') for a in argv):  # not a script
    return f'the same command plus --config.resume={workdir}'
  return shlex.join([*argv, f'--config.resume={workdir}'])


@dataclasses.dataclass
class Claim:
  """A claimed workdir. `kept`: the run saved a state to resume from, so
  `rollback` removes nothing any more."""
  workdir: Path
  created: Path | None  # the first folder the claim created, if any
  kept: bool = False

  def rollback(self) -> None:
    """Removes what the run wrote and the folders it created, unless kept."""
    if self.kept:
      return
    for name in _EARLY_FILES:
      (self.workdir / name).unlink(missing_ok=True)
    _remove_temporaries(self.workdir)
    snapshots = self.workdir / 'snapshots'
    # Deepest first; only the PNGs a run writes, and the folders left empty.
    for path in [*sorted(snapshots.rglob('*'), reverse=True), snapshots]:
      with contextlib.suppress(OSError):
        if path.is_dir():
          path.rmdir()
        elif path.suffix == '.png':
          path.unlink()
    (self.workdir / LOCK_FILE).unlink(missing_ok=True)
    self.remove_created_folders()

  def remove_created_folders(self) -> None:
    """The folders the claim made, where empty (a racing run's are not)."""
    folder = self.workdir
    while self.created and folder.is_relative_to(self.created):
      with contextlib.suppress(OSError):  # not empty
        folder.rmdir()
      folder = folder.parent


def _holder(fd: int) -> str:
  """'pid 12 on host, since 2026-01-01 10:00:00: python scripts/run.py ...'."""
  try:
    held = json.loads(os.pread(fd, 65536, 0) or b'{}')
    command = held['command']
    return (f"pid {held['pid']} on {held['host']}, since {held['started']}: "
            f"{command if len(command) < 200 else command[:197] + '...'}")
  except (OSError, ValueError, KeyError, TypeError):
    return 'it is starting'  # the holder has not written itself yet


def _lock(workdir: Path) -> int:
  """An open descriptor of workdir's LOCK_FILE, exclusively flock'ed."""
  path = workdir / LOCK_FILE
  while True:
    try:
      fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
      raise UserError(f'--workdir={workdir} is not writable ({e.strerror}): '
                      'choose a folder you can write to') from e
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      holder = _holder(fd)
      os.close(fd)
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
        raise UserError(f'--workdir={workdir} cannot be locked for this run '
                        f'({e.strerror}): choose a folder on a local disk'
                        ) from e
      raise UserError(f'--workdir={workdir} is in use by another run '
                      f'({holder}): wait for it to end, or choose another '
                      '--workdir') from e
    # The holder removes the file as it ends: a lock on the removed file
    # would claim nothing, so lock the one now there.
    with contextlib.suppress(OSError):
      if os.fstat(fd).st_ino == os.stat(path).st_ino:
        return fd
    os.close(fd)


def _remove_temporaries(workdir: Path) -> None:
  """The temporaries of atomic writes killed half-way (SIGKILL, power cut)."""
  for path in workdir.rglob('.*.tmp'):
    if _TEMPORARY.fullmatch(path.name):
      path.unlink(missing_ok=True)


@contextlib.contextmanager
def claim(workdir: Path, *, resume: bool):
  """Makes `workdir` (and its parents) and holds it for the run; yields a
  `Claim` (set its `kept` once a state is saved).

  On leaving, the lock file and any temporary files go; on an exception
  before anything was kept, also everything the run wrote (`rollback`). A
  failed write's UserError gets what is left and the command to continue.

  Raises:
    UserError: another run holds `workdir`, an earlier run's results are
      there (unless `resume`), or it cannot be made or locked.
  """
  created = workdir
  while not created.parent.exists() and created.parent != created:
    created = created.parent
  created = None if created.exists() else created
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UserError(f'cannot create --workdir={workdir} ({e.strerror or e}): '
                    'choose a folder you can write to') from e
  the_claim = Claim(workdir, created, kept=resume)
  try:
    fd = _lock(workdir)
  except UserError:
    the_claim.remove_created_folders()
    raise
  try:
    found = None if resume else earlier_run(workdir)
    if found:
      raise UserError(
          f'--workdir={workdir} already holds a run (its {found} was written '
          'after this command was checked): choose a new --workdir')
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({
        'pid': os.getpid(), 'host': socket.gethostname(),
        'started': datetime.datetime.now().isoformat(' ', 'seconds'),
        'command': shlex.join(getattr(sys, 'orig_argv', sys.argv))}).encode(),
              0)
    _remove_temporaries(workdir)
    try:
      yield the_claim
    except BaseException as e:
      the_claim.rollback()
      if not (isinstance(e, UserError) and isinstance(e.__cause__, OSError)):
        raise
      # A write failed (a full disk, ...): say what is left.
      raise UserError(f'{e}; ' + (
          f'the state saved last is kept: continue with '
          f'{continue_command(workdir)}' if the_claim.kept else
          'nothing was kept, as no state had been saved yet')) from e
    _remove_temporaries(workdir)
  finally:
    # Unlinked before it is unlocked: a run waiting on it then locks a new file.
    with contextlib.suppress(OSError):
      if os.fstat(fd).st_ino == os.stat(workdir / LOCK_FILE).st_ino:
        os.unlink(workdir / LOCK_FILE)
    os.close(fd)
