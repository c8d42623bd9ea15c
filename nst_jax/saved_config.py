"""Configs read back from a run's outputs, so any result can be made again.

Every PNG that scripts/run.py and scripts/sweep.py write holds its config in a
text chunk ('nst_jax:config', see `records.png_metadata`), and every workdir
holds a config.json (the config under 'config'). Both scripts accept either as
`--config`:

  python scripts/run.py --config=outputs/run/final.png
  python scripts/run.py --config=outputs/sweep/member_01_style_weight=10.png
  python scripts/run.py --config=outputs/run/config.json --config.image_size=1024

`cli.load_config_file` calls `load` for them; overrides
(`--config.image_size=...`) then apply as for any config file.
"""

import json
import os
from pathlib import Path

import ml_collections

from nst_jax import image as image_lib
from nst_jax.errors import UserError

CONFIG_KEY = 'nst_jax:config'
SAVED_SUFFIXES = ('.json', '.png')


def _merge(config: ml_collections.ConfigDict, saved: dict, where: str) -> None:
  """Writes `saved` into `config` (the defaults), field by field."""
  for key, value in saved.items():
    if (key in config and isinstance(config[key], ml_collections.ConfigDict)
        and isinstance(value, dict)):
      _merge(config[key], value, f'{where}{key}.')
      continue
    try:
      # Known fields keep their type (an int saved for a float field is fine);
      # unknown ones are added so that plan_run names them.
      config[key] = value
    except TypeError as e:
      raise UserError(f'saved config field {where}{key}={value!r} has the '
                      f'wrong type ({e}): fix it in the file') from e


def _saved_dict(path: Path) -> dict:
  """The saved config as a dict: a PNG's text chunk or config.json's 'config'."""
  fix = ('pass a PNG written by scripts/run.py or scripts/sweep.py, or the '
         'config.json of their workdir')
  if path.suffix.lower() == '.png':
    text = image_lib.read_png_metadata(path).get(CONFIG_KEY)
    if text is None:
      raise UserError(f'{path} holds no nst_jax config (no {CONFIG_KEY!r} text '
                      f'chunk): {fix}')
    what = f'the {CONFIG_KEY!r} text chunk of {path}'
  else:
    try:
      text = path.read_text()
    except OSError as e:
      raise UserError(f'cannot read {path} ({e.strerror or e}): {fix}') from e
    what = str(path)
  try:
    saved = json.loads(text)
  except json.JSONDecodeError as e:
    raise UserError(f'{what} is not valid JSON ({e}): {fix}') from e
  if path.suffix.lower() == '.json' and isinstance(saved, dict):
    saved = saved.get('config')
  if not isinstance(saved, dict):
    raise UserError(f'{what} holds no config object (a run\'s config.json keeps '
                    f"it under 'config'): {fix}")
  return saved


def load(path: str | os.PathLike) -> ml_collections.ConfigDict:
  """The config saved in a run's PNG or config.json, over today's defaults.

  Fields the saved config lacks (added to nst_jax since) take their defaults
  from `spec.default_config_for`, the values the older run used where a
  default has changed since; `resume` is cleared, since the result is a new
  run.

  Raises:
    UserError: the file is missing, unreadable, or holds no nst_jax config.
  """
  from nst_jax import spec  # pylint: disable=import-outside-toplevel
  path = Path(path).expanduser()
  if path.suffix.lower() not in SAVED_SUFFIXES:
    raise UserError(f'{path}: a saved config is a .png or .json file')
  if not path.is_file():
    raise UserError(f'{path} does not exist: pass a PNG or config.json that a '
                    'run wrote')
  saved = _saved_dict(path)
  config = spec.default_config_for(saved)
  _merge(config, saved, 'config.')
  config.resume = ''
  return config
