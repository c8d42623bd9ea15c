"""File plumbing written once: atomic writes, SHA-256 of files, retries, downloads.

Every file nst_jax writes (PNGs, weights, configs, checkpoints) goes through
`atomic_write`, so a crash or a concurrent reader never sees half a file.
Downloads go through pooch, checked against a pinned SHA-256 and retried with
`retry`.
"""

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from nst_jax.errors import UserError

_logger = logging.getLogger(__name__)

# Indirection so tests can skip the backoff waits.
_sleep = time.sleep

T = TypeVar('T')


# Linux's limits (NAME_MAX, PATH_MAX less the NUL), checked before any system
# call so that an over-long path is one clear line, not ENAMETOOLONG.
NAME_MAX, PATH_MAX = 255, 4095


def user_path(text: str | os.PathLike[str]) -> Path:
  """A path a user gave, as every part of nst_jax reads one: `~` expanded.

  Raises UserError (a line to prefix with the field) when `~user` names no
  user, or a name in it or the whole path is longer than the file system
  allows.
  """
  try:
    path = Path(text).expanduser()
  except RuntimeError:  # ~user naming no user (Python 3.11)
    path = Path(text)
  shown = str(text) if len(str(text)) <= 60 else f'{str(text)[:57]}...'
  if path.parts and path.parts[0].startswith('~'):
    raise UserError(f'{shown}: {path.parts[0]} is no user\'s home folder; '
                    'write the path out')
  longest = max((len(os.fsencode(p)) for p in path.parts), default=0)
  too_long = longest > NAME_MAX or len(os.fsencode(path)) > PATH_MAX
  if not too_long:
    try:
      os.lstat(path)
    except OSError as e:
      too_long = e.errno == errno.ENAMETOOLONG
  if too_long:
    raise UserError(
        f'{shown} is longer than the file system allows ({len(str(path))} '
        f'characters, a name of {longest} bytes; at most {PATH_MAX} and '
        f'{NAME_MAX}): choose a shorter path')
  return path


def check_writable_folder(where: str, folder: Path, problems: list[str]
                          ) -> None:
  """Appends a problem unless `folder` is, or can be made, a writable
  directory; `where` names the option (e.g. '--workdir')."""
  probe = folder
  while not probe.exists() and probe != probe.parent:
    if probe.is_symlink():  # dangling, or a loop
      problems.append(f'{where}={folder}: {probe} is a symbolic link to '
                      f'{os.readlink(probe)}, which leads nowhere: create '
                      'its target or choose another path')
      return
    probe = probe.parent
  if not probe.is_dir():
    problems.append(f'{where}={folder} is not a directory ({probe} is a file): '
                    'choose a directory path')
  elif not os.access(probe, os.W_OK | os.X_OK):
    problems.append(f'{where}={folder} is not writable ({probe} does not '
                    'allow writing): choose a directory you can write to')


def atomic_write(path: str | os.PathLike[str],
                 write: Callable[[BinaryIO], Any]) -> Path:
  """Writes a file through `write(f)` so that it appears whole or not at all.

  The bytes go to a temporary file in the same folder, which is flushed,
  fsynced and renamed onto `path`; then the folder is fsynced so the rename
  survives a power cut (skipped where the OS cannot open folders). On any
  failure the temporary file is removed and an existing `path` is untouched.

  Args:
    path: the file to write; missing parent folders are created.
    write: writes the whole content to the binary file object it is given.

  Returns:
    `path` as a Path (with ~ expanded).

  Raises:
    UserError: the folder cannot be created or written, or writing failed with
      an OSError (disk full, ...). Other errors from `write` propagate as is.
  """
  path = Path(path).expanduser()
  folder = path.parent
  try:
    folder.mkdir(parents=True, exist_ok=True)
    # O_EXCL + a random name: no clash with a concurrent writer. Mode 0o666
    # lets the umask decide the permissions, as for any new file (mkstemp
    # would give 0600).
    tmp = folder / f'.{path.name}.{secrets.token_hex(4)}.tmp'
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                 | getattr(os, 'O_BINARY', 0), 0o666)
  except OSError as e:
    raise UserError(
        f'cannot write to the folder {folder} ({e.strerror or e}); check its '
        'permissions or choose another output path') from e
  try:
    with os.fdopen(fd, 'wb') as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    tmp.unlink(missing_ok=True)
    if isinstance(e, OSError):
      raise UserError(f'cannot write {path} ({e.strerror or e}); check free '
                      'space and permissions') from e
    raise
  with contextlib.suppress(OSError):
    fd = os.open(folder, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)
  return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
  """`atomic_write` of `text` encoded as UTF-8; returns `path` as a Path."""
  return atomic_write(path, lambda f: f.write(text.encode('utf-8')))


def sha256_file(path: str | os.PathLike[str]) -> str:
  """Lower-case hex SHA-256 (64 digits) of the bytes of the file at `path`."""
  with open(path, 'rb') as f:
    return hashlib.file_digest(f, 'sha256').hexdigest()


def retry(fn: Callable[[], T], *, tries: int,
          retryable: Callable[[Exception], bool] = lambda error: True,
          backoff_s: float = 1.0, log: Callable[[str], Any] = _logger.warning,
          what: str | None = None) -> T:
  """Calls `fn()` until it returns, at most `tries` times in all.

  Waits `backoff_s`, 2 * `backoff_s`, 4 * `backoff_s`, ... seconds between
  tries, and logs one line before each wait.

  Args:
    fn: the call to make; raises on failure.
    tries: attempts in all, >= 1.
    retryable: whether another try may succeed after this error; False
      re-raises it at once.
    backoff_s: the first wait, in seconds; it doubles after each try.
    log: receives the line logged before each wait.
    what: names the call in that line; `fn.__name__` when None.

  Returns:
    What `fn` returned.

  Raises:
    The last error of `fn` once `tries` are used up, or the first one that is
    not `retryable`. Only Exceptions are retried, never e.g. KeyboardInterrupt.
  """
  if tries < 1:
    raise ValueError(f'tries must be >= 1, got {tries}')
  for attempt in range(1, tries):
    try:
      return fn()
    except Exception as e:  # pylint: disable=broad-except
      if not retryable(e):
        raise
      wait_s = backoff_s * 2 ** (attempt - 1)
      log(f'{what or getattr(fn, "__name__", "call")} failed ({e}); try '
          f'{attempt + 1} of {tries} in {wait_s:g} s')
      _sleep(wait_s)
  return fn()  # The last try: its error is the caller's.


def _retryable_download(error: Exception) -> bool:
  """Whether another try may help after `error` from pooch (i.e. requests)."""
  status = getattr(getattr(error, 'response', None), 'status_code', None)
  if status is not None:
    # Timeouts, rate limits and server errors pass; 404s and 403s do not.
    return status in (408, 425, 429) or status >= 500
  # requests' errors are OSErrors; bad URLs are also ValueErrors, and so is
  # pooch's checksum mismatch: none of those is worth another try, nor is a
  # host name that does not resolve (no network).
  return (isinstance(error, OSError) and not isinstance(error, ValueError)
          and 'resolve' not in str(error))


def _reason(error: Exception) -> str:
  """A network error in a few words: requests' own run to 700 characters."""
  text = ' '.join(str(error).split())
  cause = re.findall(r'\[Errno -?\d+\] ([^)"\']+)', text)
  if cause:
    return f'no connection: {cause[-1].strip()}'
  return text if len(text) <= 150 else text[:147] + '...'


def download(url: str, path: str | os.PathLike[str], sha256: str, *,
             tries: int = 3, backoff_s: float = 1.0,
             timeout_s: float = 60.0) -> Path:
  """Downloads `url` to `path` with pooch if its SHA-256 is `sha256`.

  pooch streams into a temporary file beside `path` and moves it onto `path`
  only once its checksum matches. Network failures and 408/425/429/5xx answers
  are retried (see `retry`); a wrong checksum or a 404 is not.

  Args:
    url: an http(s) URL.
    path: the final file; its folder is created.
    sha256: lower-case hex SHA-256 the file must have.
    tries: attempts in all, >= 1.
    backoff_s: the first wait between attempts, in seconds; doubles each time.
    timeout_s: socket timeout of each attempt, in seconds.

  Returns:
    `path` as a Path.

  Raises:
    UserError: every try failed, the checksum does not match, or the folder is
      not writable. The message gives the URL and the path to save it to.
  """
  import pooch  # pylint: disable=g-import-not-at-top  # ~50 ms; rarely needed.
  pooch.get_logger().setLevel(logging.WARNING)  # our own line says it all
  path = Path(path)
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UserError(f'cannot create the download folder {path.parent} '
                    f'({e.strerror or e}); set NST_CACHE_DIR to a writable '
                    f'folder, or fetch {url} by hand and save it as {path}'
                    ) from e
  attempts = 0

  def fetch() -> None:
    nonlocal attempts
    attempts += 1
    pooch.retrieve(url, known_hash=f'sha256:{sha256}', fname=path.name,
                   path=path.parent,
                   downloader=pooch.HTTPDownloader(timeout=timeout_s))

  try:
    retry(fetch, tries=tries, retryable=_retryable_download,
          backoff_s=backoff_s, what=f'download of {url}')
  except OSError as e:  # requests' errors, including bad URLs.
    raise UserError(f'could not download {url} after {attempts} '
                    f'{"try" if attempts == 1 else "tries"} ({_reason(e)}); '
                    f'fetch it by hand and save it as {path}') from e
  except ValueError as e:  # pooch's checksum mismatch.
    raise UserError(
        f'{url} failed its sha256 check ({e}); the file changed or the '
        f'download was altered: get it from a trusted copy and save it as '
        f'{path}') from e
  _logger.info('downloaded %s to %s', url, path)
  return path
