"""Two processes on this machine run one sweep together (`sweep.py --distributed`).

The CLI contract checked: with $NST_COORDINATOR/$NST_NUM_PROCESSES/
$NST_PROCESS_ID set, two processes (one CPU device each, gloo collectives)
split a 4-member sweep, only process 0 prints and writes, and every member PNG
equals its single run (what `scripts/run.py --config=<member PNG>` runs, here
in this process) to 1/255.
"""

import json
import os
from pathlib import Path
import socket
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from nst_jax import saved_config
from nst_jax import transfer

pytestmark = pytest.mark.slow

_REPO = Path(__file__).resolve().parents[1]
_TIMEOUT_S = 600


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(('NST_COORDINATOR', 'NST_NUM_PROCESSES',
                              'NST_PROCESS_ID', 'NST_DISTRIBUTED'))
         and k != 'XLA_FLAGS'}
  # One CPU device per process (the session's compilation cache is in
  # $NST_COMPILATION_CACHE already: see conftest.py).
  env.update(JAX_PLATFORMS='cpu', PYTHONPATH=str(_REPO))
  env.update(extra)
  return env


def _pixels(path: Path) -> np.ndarray:
  return np.asarray(Image.open(path).convert('RGB'), np.float32) / 255.0


@pytest.fixture(scope='module')
def distributed_sweep(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp('distributed')
  workdir = tmp_path / 'sweep'
  port = _free_port()
  command = [sys.executable, 'scripts/sweep.py',
             '--config=configs/starry_sweep.py:quick',
             '--config.image_size=32', '--config.max_iterations=3',
             # Two blocks of VGG19: splitting members does not need five.
             '--config.content_layers=block2_conv2',
             '--config.style_layers=block1_conv1,block2_conv1',
             '--distributed', f'--workdir={workdir}']
  processes = [
      subprocess.Popen(command, cwd=_REPO, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True,
                       env=_env(NST_COORDINATOR=f'127.0.0.1:{port}',
                                NST_NUM_PROCESSES='2', NST_PROCESS_ID=str(i)))
      for i in range(2)]
  outputs = []
  try:
    for p in processes:
      outputs.append(p.communicate(timeout=_TIMEOUT_S))
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
  for i, (p, (_, err)) in enumerate(zip(processes, outputs)):
    assert p.returncode == 0, f'process {i} exited {p.returncode}:\n{err[-3000:]}'
  return tmp_path, workdir, outputs


def test_only_process_0_prints_and_writes(distributed_sweep):
  _, workdir, outputs = distributed_sweep
  (out0, _), (out1, _) = outputs
  assert out0.strip(), 'process 0 printed nothing'
  # Gloo's C++ runtime announces its connection itself: not ours to silence.
  ours = [l for l in out1.splitlines() if l.strip() and not l.startswith('[Gloo]')]
  assert not ours, f'process 1 printed:\n{out1}'
  members = sorted(workdir.glob('member_*.png'))
  assert len(members) == 4, sorted(p.name for p in workdir.iterdir())
  assert (workdir / 'results.jsonl').is_file()
  # Nothing written elsewhere by process 1 (e.g. a second workdir).
  assert [p.name for p in workdir.parent.iterdir()] == ['sweep']


def test_members_are_split_between_the_processes(distributed_sweep):
  _, workdir, _ = distributed_sweep
  rows = [json.loads(line) for line in
          (workdir / 'results.jsonl').read_text().splitlines() if line.strip()]
  assert len(rows) == 4
  devices = {str(row.get('device')) for row in rows}
  assert len(devices) == 2, f'members ran on {devices}, not on both processes'


def test_each_member_equals_its_single_run(distributed_sweep):
  tmp_path, workdir, _ = distributed_sweep
  for member in sorted(workdir.glob('member_*.png')):
    single = transfer.run(saved_config.load(member),
                          tmp_path / f'single_{member.stem}', log=lambda _: None)
    difference = np.abs(_pixels(member) - _pixels(single['final'])).max()
    assert difference <= 1 / 255 + 1e-6, f'{member.name}: {difference * 255} levels'
