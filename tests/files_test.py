"""Tests for nst_jax.files: atomic writes, sha256_file and retry.

Downloads are tested through image.resolve_image in image_test.py, against a
local http.server.
"""

import hashlib
import os
import re

import pytest

from nst_jax import files
from nst_jax.errors import UserError


@pytest.fixture
def sleeps(monkeypatch):
  """The waits `retry` asked for, in seconds; nothing actually sleeps."""
  waits = []
  monkeypatch.setattr(files, '_sleep', waits.append)
  return waits


# --- atomic_write ------------------------------------------------------------


def test_atomic_write_creates_and_replaces(tmp_path):
  path = tmp_path / 'a' / 'b' / 'x.bin'
  assert files.atomic_write(path, lambda f: f.write(b'one')) == path
  assert files.atomic_write_text(path, 'twö') == path
  assert path.read_text('utf-8') == 'twö'
  assert os.listdir(path.parent) == ['x.bin']


@pytest.mark.parametrize('error, expected, message', [
    # Not an OSError: the writer's own error, as it was raised.
    (RuntimeError('boom'), RuntimeError, '^boom$'),
    # An OSError becomes one line naming the file.
    (OSError(28, 'No space left on device'), UserError,
     r'^cannot write {path} \(No space left on device\); check free space')])
def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, error,
                                                        expected, message):
  path = tmp_path / 'x.txt'
  path.write_text('old')

  def write(f):
    f.write(b'half a new fi')
    raise error

  with pytest.raises(expected, match=message.format(path=re.escape(str(path)))):
    files.atomic_write(path, write)
  assert path.read_text() == 'old'
  assert os.listdir(tmp_path) == ['x.txt']


def test_atomic_write_into_a_file_is_a_user_error(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('')
  with pytest.raises(UserError, match=f'folder {re.escape(str(blocker))}'):
    files.atomic_write(blocker / 'x.txt', lambda f: f.write(b''))


def test_atomic_write_fsyncs_file_and_folder(tmp_path, monkeypatch):
  synced = []
  real_fsync = os.fsync
  monkeypatch.setattr(os, 'fsync', lambda fd: synced.append(fd) or
                      real_fsync(fd))
  files.atomic_write(tmp_path / 'x', lambda f: f.write(b'x'))
  assert len(synced) == (2 if os.name == 'posix' else 1)


# --- sha256_file -------------------------------------------------------------


def test_sha256_file(tmp_path):
  data = os.urandom(3 << 20)  # Several read chunks.
  path = tmp_path / 'data'
  path.write_bytes(data)
  assert files.sha256_file(path) == hashlib.sha256(data).hexdigest()
  (tmp_path / 'empty').write_bytes(b'')
  assert files.sha256_file(str(tmp_path / 'empty')) == (
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')


# --- retry -------------------------------------------------------------------


def _flaky(failures: int, error: Exception = ConnectionError('reset')):
  """A function that raises `error` `failures` times, then returns 'ok'."""
  calls = []

  def fn():
    calls.append(1)
    if len(calls) <= failures:
      raise error
    return 'ok'

  return fn, calls


def test_retry_succeeds_after_failures(sleeps):
  fn, calls = _flaky(2)
  logs = []
  assert files.retry(fn, tries=3, backoff_s=0.5, log=logs.append,
                     what='fetch') == 'ok'
  assert len(calls) == 3 and sleeps == [0.5, 1.0]
  assert logs == ['fetch failed (reset); try 2 of 3 in 0.5 s',
                  'fetch failed (reset); try 3 of 3 in 1 s']


def test_retry_reraises_the_last_error(sleeps):
  fn, calls = _flaky(5)
  with pytest.raises(ConnectionError, match='reset'):
    files.retry(fn, tries=3, log=lambda _: None)
  assert len(calls) == 3 and sleeps == [1.0, 2.0]


def test_retry_stops_at_an_error_that_is_not_retryable(sleeps):
  fn, calls = _flaky(5, ValueError('bad'))
  with pytest.raises(ValueError, match='bad'):
    files.retry(fn, tries=3,
                retryable=lambda e: not isinstance(e, ValueError))
  assert len(calls) == 1 and not sleeps


def test_retry_needs_a_try():
  with pytest.raises(ValueError, match='tries'):
    files.retry(lambda: None, tries=0)
