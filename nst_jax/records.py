"""What a run writes, and in which format (see `nst_jax.engine` for the layout).

config.json (the config, members, weights, versions, devices), each PNG's
text chunks (its single-run config: `png_metadata`), losses.jsonl rows (one
per chunk and member: `loss_row`), results.jsonl rows (one per member:
`result_row`) and the snapshot names.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections

from nst_jax import spec as spec_lib


def library_versions() -> dict[str, str]:
  """Installed versions of nst_jax and the libraries that shape its results."""
  import importlib.metadata as md  # pylint: disable=import-outside-toplevel
  versions = {}
  for name in ('nst_jax', 'jax', 'jaxlib', 'flax', 'optax', 'jaxopt', 'numpy',
               'pillow'):
    try:
      versions[name] = md.version(name)
    except md.PackageNotFoundError:
      versions[name] = 'not installed'
  return versions


def png_metadata(config: ml_collections.ConfigDict, params_sha256: str,
                 versions: dict[str, str] | None = None) -> dict[str, str]:
  """PNG text chunks that let an image be traced and made again.

  `scripts/run.py --config=<the PNG>` reads 'nst_jax:config' back (see
  `nst_jax.saved_config`); where a resumed run came from is not part of it.

  Returns:
    {'nst_jax:config': JSON, 'nst_jax:seed', 'nst_jax:weights_sha256',
     'nst_jax:versions': JSON}.
  """
  recorded = config.copy_and_resolve_references()
  if 'resume' in recorded:
    recorded.resume = ''
  return {'nst_jax:config': recorded.to_json(),
          'nst_jax:seed': str(recorded.seed),
          'nst_jax:weights_sha256': params_sha256,
          'nst_jax:versions': json.dumps(versions or library_versions())}


def config_record(spec: spec_lib.RunSpec, weights_info: dict,
                  versions: dict[str, str], devices: Sequence[str],
                  processes: int) -> str:
  """config.json: the config as given, weights, versions, devices (and a
  sweep's members: index, file, values)."""
  record = {'config': json.loads(spec.config.to_json()),
            'weights': weights_info, 'versions': versions,
            'devices': list(devices), 'processes': processes}
  if spec.sweep:
    record['members'] = [{'member': m.index, 'file': m.file, 'values': m.values}
                         for m in spec.members]
  return json.dumps(record, indent=2)


def snapshot_path(spec: spec_lib.RunSpec, member: spec_lib.Member,
                  iteration: int, scale: int) -> Path:
  """snapshots/[<member>/][scaleK_]iter_NNNNNN.png in the workdir."""
  name = (f'scale{scale + 1}_' if len(member.scale_hws) > 1 else '') + \
      f'iter_{iteration:06d}.png'
  folder = spec.workdir / 'snapshots'
  return folder / Path(member.file).stem / name if spec.sweep \
      else folder / name


def loss_row(spec: spec_lib.RunSpec, member: spec_lib.Member, scale: int,
             iteration: int, evaluations: int, terms: dict[str, float],
             seconds: float) -> dict[str, Any]:
  """A losses.jsonl row: ['member',] scale (1-based), iteration, evaluations,
  the loss terms and the seconds since the scale's first chunk began."""
  row = {'scale': scale + 1, 'iteration': iteration, 'evaluations': evaluations,
         **terms, 'seconds': round(seconds, 3)}
  return {'member': member.index, **row} if spec.sweep else row


# losses.jsonl fields that are not loss terms, and the terms every run has.
_ROW_FIELDS = ('member', 'scale', 'iteration', 'evaluations', 'seconds')
_BASE_TERMS = ('content', 'style', 'tv')


def result_row(member: spec_lib.Member, rows: Sequence[dict], status: str,
               device: str) -> dict[str, Any]:
  """A results.jsonl row: `member`'s values, its last loss terms (content,
  style, tv, total and any extra term's, e.g. 'photo'), iterations and
  evaluations summed over scales, status and device; from its losses.jsonl
  `rows`."""
  mine = [row for row in rows if row.get('member', 0) == member.index]
  per_scale = {row['scale']: row for row in mine}.values()  # each one's last
  last = mine[-1] if mine else {}
  extra = [k for k in last if k not in (*_ROW_FIELDS, *_BASE_TERMS, 'total')]
  return {'member': member.index, 'file': member.file, 'values': member.values,
          **{k: last.get(k, float('nan'))
             for k in (*_BASE_TERMS, *extra, 'total')},
          'iterations': sum(row['iteration'] for row in per_scale),
          'evaluations': sum(row['evaluations'] for row in per_scale),
          'status': status, 'device': device}


def jsonl(rows: Sequence[dict]) -> str:
  """One JSON object per line."""
  return ''.join(json.dumps(row) + '\n' for row in rows)
