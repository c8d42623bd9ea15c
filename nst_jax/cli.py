"""What scripts/*.py share: the config, its checks, user errors as `error:` lines.

`run` loads `--config` (a config file, or a PNG or config.json a run wrote)
once and checks every `--config.<field>=<value>` before absl parses argv, so
each typo or value of the wrong type is one `error:` line, all at once (exit
2), not a traceback; absl then applies the overrides to the loaded config.
Ranges are the run spec's (nst_jax/spec.py) to check.
"""

from collections.abc import Callable
import contextlib
import difflib
import inspect
import os
from pathlib import Path
import re
import runpy
import sys
import traceback
from typing import Any

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

from nst_jax import runtime
from nst_jax import saved_config
from nst_jax.errors import UserError
from nst_jax.signals import Interrupted

# absl's own parsers, so that a value passing here also passes there.
_TYPES = {int: (flags.IntegerParser(), 'a whole number', 'an int'),
          float: (flags.FloatParser(), 'a number', 'a float'),
          bool: (flags.BooleanParser(), 'true or false', 'a bool')}
_CONFIG = re.compile(r'--?config(?:=(.*))?', re.DOTALL)
_OVERRIDE = re.compile(r'(--?(no)?config\.([^=]*))(?:=(.*))?', re.DOTALL)


def exit_with_user_error(error: UserError) -> None:
  """Prints each line of the message as `error: ...` on stderr; exits 2."""
  print(f'error: {error}'.replace('\n', '\nerror: '), file=sys.stderr)
  sys.exit(2)


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
  """fn(*args, **kwargs) for a script: a UserError becomes `error:` lines
  (exit 2), an interrupted run its message and exit 130 (resume it)."""
  try:
    return fn(*args, **kwargs)
  except UserError as e:
    exit_with_user_error(e)
  except Interrupted as e:
    print(e, file=sys.stderr)
    sys.exit(130)


def run(main: Callable[[list[str]], None]) -> None:
  """app.run(main) once `load_config_argv` passes; absl's flag 'config' holds
  the config with its overrides (see `checked_config`)."""
  try:
    argv, config = load_config_argv(sys.argv)
  except UserError as e:
    exit_with_user_error(e)
  # absl reads only the overrides: the file has run once, here.
  sys.argv = [arg for i, arg in enumerate(argv)
              if not _CONFIG.fullmatch(arg) and not (
                  i and _CONFIG.fullmatch(argv[i - 1])
                  and _CONFIG.fullmatch(argv[i - 1])[1] is None)]
  if config is not None:
    config_flags.DEFINE_config_dict('config', config, 'The --config given.',
                                    lock_config=True)
  app.run(main)


def checked_config(argv: list[str], example: str) -> ml_collections.ConfigDict:
  """The config of `run` after runtime.configure; app.UsageError if none or
  with extras."""
  logging.set_verbosity(logging.WARNING)  # JAX's backend probing is noise here
  config = flags.FLAGS.config if 'config' in flags.FLAGS else None
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if config is None:
    raise app.UsageError(f'--config is required, e.g. --config={example}')
  # Before anything touches JAX: XLA reads its flags when the backend starts.
  cache = config.get('compilation_cache')
  deterministic = config.get('deterministic') is not False
  try:
    runtime.configure(cache if isinstance(cache, str) and cache else None,
                      deterministic=deterministic)
  except UserError:
    # spec.parse names the unusable folder together with every other problem.
    runtime.configure('off', deterministic=deterministic)
  return config


def _describe(error: Exception, path: str) -> str:
  """"KeyError: 'a' (configs/x.py, line 2)": one line, and where in `path`."""
  lines = [f.lineno for f in traceback.extract_tb(error.__traceback__)
           if os.path.realpath(f.filename) == os.path.realpath(path)]
  return (f'{type(error).__name__}: {" ".join(str(error).split())}'
          + (f' ({path}, line {lines[-1]})' if lines else ''))


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """The config `--config=<path>[:<variant>]` loads, or a one-line UserError;
  a PNG or config.json a run wrote stands for its config (`saved_config`)."""
  if Path(spec).suffix.lower() in saved_config.SAVED_SUFFIXES:
    return saved_config.load(spec)
  path, has_variant, variant = spec.partition(':')
  where = f'--config={spec}'
  if not os.path.isfile(path):
    raise UserError(f'{where}: {path} is not a file' if path
                    else f'{where}: no config file given')
  try:
    module = runpy.run_path(path, run_name='_nst_jax_cli_config')
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'{where}: {path} does not load: {_describe(e, path)}'
                    ) from e
  get_config = module.get('get_config')
  if not callable(get_config):
    raise UserError(f'{where}: {path} has no get_config() returning an '
                    'ml_collections.ConfigDict')
  if has_variant and not inspect.signature(get_config).parameters:
    raise UserError(f"{where}: {path} takes no variant: drop ':{variant}'")
  try:
    config = get_config(*((variant,) if has_variant else ()))
  except ValueError as e:
    # The config's own message (a bad variant), and the ':variant's the
    # command lines in its docstring show where the message lacks one.
    message, found = ' '.join(str(e).split()), dict.fromkeys(re.findall(
        re.escape(os.path.basename(path)) + r':([\w.,-]+)(?=[\s\'"`)]|$)',
        module.get('__doc__') or ''))
    shown = ', '.join(f':{v}' for v in found)
    missing = any(v not in message for v in found)
    raise UserError(f'{where}: {message}' + (
        f' (its docstring shows {shown})' if missing else '')) from e
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'{where}: get_config() in {path} failed: '
                    f'{_describe(e, path)}') from e
  if not isinstance(config, ml_collections.ConfigDict):
    raise UserError(f'{where}: get_config() in {path} returned a '
                    f'{type(config).__name__}, not a ConfigDict')
  return config


def _flatten(config: ml_collections.ConfigDict, prefix: str = '') -> dict:
  """{'image_size': 512, 'sweep': <ConfigDict>, 'sweep.chunk': 0, ...}."""
  out = {}
  for key, value in config.items():
    out[prefix + key] = value
    if isinstance(value, ml_collections.ConfigDict):
      out.update(_flatten(value, f'{prefix}{key}.'))
  return out


def _check(fields: dict[str, object], shown: str, field: str,
           value: str | None, negated: bool) -> str:
  """The value absl is to get for the override `shown[=value]`, or UserError."""
  if field not in fields:
    leaves = [f for f, v in fields.items()
              if not isinstance(v, ml_collections.ConfigDict)]
    # In order: the same name in another section (chunk: sweep.chunk), a
    # near-identical name (stlye_weight), a field the name starts with
    # (content_image: content, not content_weight), a roughly similar one.
    near = ([f for f in leaves if f.split('.')[-1] == field.split('.')[-1]]
            + difflib.get_close_matches(field, leaves, 1, cutoff=0.85)
            + sorted(f for f in leaves if field.startswith(f + '_'))[-1:]
            + difflib.get_close_matches(field, leaves, 1))
    raise UserError(f'{shown}: unknown field; ' + (
        f'did you mean {near[0]}?' if near
        else 'configs/default.py lists every field'))
  current, kind = fields[field], type(fields[field])
  if isinstance(current, ml_collections.ConfigDict):
    first = next(iter(current.keys()), '<field>')
    raise UserError(f'{shown}: {field} is a section: set its fields, e.g. '
                    f'--config.{field}.{first}=...')
  example = 'e.g. --config.{}={}'.format(
      field, str(current).lower() if kind is bool else current)
  if negated and kind is not bool:
    raise UserError(f'{shown}: only a true/false field takes the --no '
                    f'prefix; {example}')
  if value is None and kind is not bool:
    raise UserError(f'{shown}: no value given; {example}')
  if value is None or kind not in _TYPES:
    # Any text is a str; absl checks other types itself.
    return str(not negated).lower() if value is None else value
  with contextlib.suppress(ValueError):
    _TYPES[kind][0].parse(value)
    return value
  with contextlib.suppress(ValueError):
    # absl's int parser takes no exponent or point: a whole 1e3 or 512.0 does.
    if kind is int and float(value).is_integer():
      return str(int(float(value)))
  raise UserError(f'{shown}={value}: {value!r} is not {_TYPES[kind][1]} '
                  f'({field} is {_TYPES[kind][2]}); {example}')


def check_config_argv(argv: list[str]) -> list[str]:
  """`load_config_argv`'s argv."""
  return load_config_argv(argv)[0]


def load_config_argv(argv: list[str]
                     ) -> tuple[list[str], ml_collections.ConfigDict | None]:
  """Loads `--config=<file>` (the last one); checks every override in argv.

  Each override (`--config.a.b=v`, `--config.a.b v`; `--config.a` and
  `--noconfig.a` for true/false) must name a field and parse as its type.
  Returns (argv with each as `--config.a.b=v`, whole ints such as `1e3` as
  `1000`; the config, overrides not applied), or (argv, None) without
  --config. Raises UserError: one line for each problem.
  """
  at = [i for i, arg in enumerate(argv) if _CONFIG.fullmatch(arg)]
  if not at:
    return argv, None
  spec = _CONFIG.fullmatch(argv[at[-1]])[1]
  spec = (argv[at[-1] + 1:] or [''])[0] if spec is None else spec
  config = load_config_file(spec)
  fields, problems, out, i = _flatten(config), [], argv[:1], 1
  while i < len(argv):
    before, arg, i = i < at[0], argv[i], i + 1
    if not (match := _OVERRIDE.fullmatch(arg)):
      out.append(arg)
      continue
    shown, negated, field, value = match[1], bool(match[2]), match[3], match[4]
    # `--config.a.b value` as absl reads it; a next `--flag` is surely a
    # missing value, not the value.
    if value is None and not negated and argv[i:] and argv[i][:2] != '--':
      value, i = argv[i], i + 1
    try:
      if before:
        raise UserError(f'{shown}: comes before --config; put --config first')
      value = _check(fields, shown, field, value, negated)
      out.append(f'--config.{field}={value}')
    except UserError as e:
      problems.append(str(e))
  if problems:
    raise UserError('\n'.join(problems))
  return out, config
