"""The state file of an unfinished run (state.npz), for config.resume.

The optimiser carry's leaves as arrays and a JSON header (where the run is:
call, scale, the losses.jsonl rows and the finished members' rows); no
pickles. Written atomically after chunks, so a run killed even with SIGKILL
resumes from its last saved chunk.
"""

import json
from pathlib import Path

import jax
import numpy as np

from nst_jax import files
from nst_jax import optimize
from nst_jax import programs
from nst_jax.errors import UserError

STATE_FILE = 'state.npz'


def save_state(path: Path, state: optimize.OptState, meta: dict) -> None:
  """Writes the optimiser carry and `meta` (JSON) as an .npz, atomically."""
  leaves = [programs.host(leaf) for leaf in jax.tree.leaves(state)]
  arrays = {f'leaf_{i:04d}': leaf for i, leaf in enumerate(leaves)}
  header = dict(meta, num_leaves=len(leaves))
  arrays['__meta__'] = np.frombuffer(json.dumps(header).encode(), np.uint8)
  if jax.process_index() == 0:
    files.atomic_write(path, lambda f: np.savez(f, **arrays))


def read_state_meta(path: Path) -> dict:
  """The JSON header of a `save_state` file."""
  try:
    with np.load(path, allow_pickle=False) as data:
      meta = json.loads(bytes(data['__meta__']).decode())
    missing = {'call', 'scale', 'rows', 'done', 'num_leaves'} - set(meta)
    if missing:
      raise KeyError(f'no {", ".join(sorted(missing))}')
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(
        f'{path} is not a readable run state ({type(e).__name__}: '
        f'{" ".join(str(e).split())[:80]}): start a new run instead, with '
        'another --workdir') from None
  return meta


def load_state(path: Path, like: optimize.OptState) -> optimize.OptState:
  """Reads `save_state`'s arrays into the structure (and sharding) of `like`."""
  meta = read_state_meta(path)
  with np.load(path, allow_pickle=False) as data:
    leaves = [data[f'leaf_{i:04d}'] for i in range(meta['num_leaves'])]
  like_leaves, treedef = jax.tree.flatten(like)
  if len(leaves) != len(like_leaves) or any(
      a.shape != b.shape or a.dtype != b.dtype
      for a, b in zip(leaves, like_leaves)):
    raise UserError(f'{path} was saved by a different optimiser or '
                    'image size: start a new run instead')
  return jax.tree.unflatten(treedef, [programs.put(a, b.sharding) for a, b in
                                      zip(leaves, like_leaves)])
