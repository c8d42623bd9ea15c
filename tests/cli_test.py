"""Tests for nst_jax.cli: every bad --config value is one `error:` line, never a traceback.

The tables give a bad value for every field of configs/default.py's
get_config() (a field added there without one fails
`test_tables_cover_every_field`), many fields at once, and check that each
field gets exactly one `error:` line naming it. Two tables go through the
scripts (one process each, the exit-status contract: status 2, nothing on
stdout, nothing written): run.py with a value of the wrong type for every
field (refused before absl parses argv), sweep.py with out-of-range sweep
values (refused by the run spec). The other tables take the same two steps in
this process: `cli.check_config_argv`, absl's parse, then `spec.parse`.
"""

from pathlib import Path
import re

import ml_collections
import pytest

from configs import default as default_config
from nst_jax import cli
from nst_jax import spec
from nst_jax.errors import UserError

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / 'configs' / 'default.py'


def _leaves(config: ml_collections.ConfigDict, prefix: str = '') -> dict:
  """{'image_size': 512, ..., 'sweep.chunk': 0}: every leaf field and its default."""
  out = {}
  for key in config.keys():
    value = config[key]
    if isinstance(value, ml_collections.ConfigDict):
      out.update(_leaves(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


FIELDS = _leaves(default_config.get_config())

# A value of the wrong type for every field that has one (any text is a str).
# Whole-number fields alternate a word and a fraction: both must be refused.
_INT_FIELDS = sorted(f for f, v in FIELDS.items() if type(v) is int)
WRONG_TYPE = {
    **{f: ('abc' if i % 2 == 0 else '2.5') for i, f in enumerate(_INT_FIELDS)},
    **{f: 'high' for f, v in FIELDS.items() if type(v) is float},
    **{f: 'maybe' for f, v in FIELDS.items() if type(v) is bool},
}

# Out-of-range values, grouped as the run spec checks them: it reports the
# field values (numbers, choices, layer names, the resume folder) first and,
# only when those are all fine, the inputs they lead to (images, per-style
# and per-layer lists, the weights file).
OUT_OF_RANGE_VALUES = {
    'image_size': '0', 'style_scale': '100', 'preserve_color': 'sepia',
    'scales': '0', 'scale_ratio': '1.0', 'pooling': 'median', 'memory': 'lots',
    'precision': 'float16',
    'tile': '-1', 'memory_budget': '-1', 'style_pyramid_size': '-1',
    'style_pyramid_weight': '-0.5', 'content_layers': 'block9_conv1',
    'style_layers': 'block1_conv1,block9_conv1', 'normalization': 'whitened',
    'style_loss': 'l1', 'content_weight': '-1', 'style_weight': '-1',
    'tv_weight': '-1', 'seed': '-1', 'optimizer': 'sgd',
    'max_iterations': '-1', 'history_size': '0', 'linesearch': 'armijo',
    'max_linesearch_steps': '0', 'first_step_fraction': '2.0',
    'learning_rate': '0', 'snapshot_every': '0',
    'region_feather': '-1', 'region_photo_weight': '-1',
    'resume': '/nonexistent/nst_jax_run',
    'compilation_cache': '/dev/null/cache',   # a folder inside a device file
}
OUT_OF_RANGE_INPUTS = {
    'content': 'no_such_photo', 'style': 'no_such_painting',
    'style_blend': '0.5,0.5',             # two weights, one style
    'style_layer_weights': '1,2',         # two weights, five style layers
    'init': 'no_such_start.png',
    'weights': '/nonexistent/vgg19.npz',
    'scale_iterations': '100,50',         # two counts, one scale
}
# scripts/sweep.py's own section. sweep.seed needs init='noise' (else a
# second line says so), given as a good value beside the bad ones.
OUT_OF_RANGE_SWEEP = {
    'sweep.content_weight': '-1', 'sweep.style_weight': 'abc',
    'sweep.tv_weight': 'inf', 'sweep.style_layer_weights': '1,2',
    'sweep.seed': '1,99999999999', 'sweep.mode': 'diagonal', 'sweep.chunk': '-1',
    'sweep.batch': '-1', 'sweep.tile_size': '0',
    'sweep.region_photo_weight': '-5',
}
OUT_OF_RANGE_SWEEP_INPUTS = {
    'sweep.content': 'no_such_photo', 'style': 'no_such_painting',
    'style_layer_weights': '1,2', 'init': 'no_such_start.png',
    'weights': '/nonexistent/vgg19.npz',
}
# The regions' label images and mapping: one bad value per case, each
# refused with one line that `regions_test`-style text identifies.
LABELS = REPO / 'configs' / 'regions'
REGION_CASES = {
    'aspect': ({'content_regions': LABELS / 'starry_night_sky.png',
                'region_styles': 'blue=starry_night, white=none'},
               'content_regions', r'5\.1% apart \(over 1%\)'),
    'unmapped': ({'content_regions': LABELS / 'tubingen_sky.png',
                  'region_styles': 'blue=starry_night'},
                 'region_styles', "does not map region 'white'"),
    'no-such-style-region': (
        {'content_regions': LABELS / 'tubingen_sky.png',
         'style_regions': f'starry_night={LABELS / "starry_night_sky.png"}',
         'region_styles': 'blue=starry_night@red, white=none'},
        'region_styles', "has no region of colour 'red'"),
    'unknown-style': ({'content_regions': LABELS / 'tubingen_sky.png',
                       'region_styles': 'blue=monet, white=none'},
                      'region_styles', "'monet' is not one of config.style"),
    'empty': ({'content_regions': 'SPECK', 'image_size': 64,
               'region_styles': 'white=none, red=starry_night'},
              'content_regions', r"region 'red' covers 0\.1\d of the 12 "
              'positions of block5_conv1'),
}
REGION_FIELDS = {'content_regions', 'style_regions', 'region_styles'}
# True/False fields have no out-of-range value: the wrong-type table covers them.
NO_RANGE = {f for f, v in FIELDS.items() if type(v) is bool}


def _overrides(table: dict[str, str]) -> list[str]:
  return [f'--config.{field}={value}' for field, value in table.items()]


def _names(line: str, field: str) -> bool:
  """Whether an error line names config.<field> (not a longer field)."""
  return re.search(rf'(?<![\w.])(--)?config\.{re.escape(field)}(?![\w.])',
                   line) is not None


def _assert_one_line_each(lines: list[str], fields) -> None:
  """Exactly one line naming each field, and no other line."""
  for field in fields:
    naming = [l for l in lines if _names(l, field)]
    assert len(naming) == 1, (field, naming, lines)
  assert len(lines) == len(fields), lines


def _assert_refused(result, fields, tmp_path: Path, user_error) -> list[str]:
  """A script's refusal: exit 2, only `error:` lines on stderr, one naming
  each field, nothing on stdout, nothing written."""
  user_error(result)
  assert result.stdout == ''
  assert list(tmp_path.iterdir()) == [], 'an error run wrote files'
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert all(l.startswith('error: ') for l in lines), result.stderr
  _assert_one_line_each(lines, fields)
  return lines


def test_tables_cover_every_field():
  out_of_range = (set(OUT_OF_RANGE_VALUES) | set(OUT_OF_RANGE_INPUTS)
                  | set(OUT_OF_RANGE_SWEEP) | set(OUT_OF_RANGE_SWEEP_INPUTS)
                  | NO_RANGE | REGION_FIELDS)
  assert REGION_FIELDS == {field for overrides, _, _ in REGION_CASES.values()
                           for field in overrides} - {'image_size'}
  assert set(FIELDS) - out_of_range == set()
  assert out_of_range - set(FIELDS) == set()  # no stale names
  assert set(WRONG_TYPE) == {f for f, v in FIELDS.items()
                             if not isinstance(v, str)}


# --- Through the scripts: one process each --------------------------------------

def test_run_py_refuses_every_wrong_type_at_once(run_script, user_error,
                                                 tmp_path):
  result = run_script('run.py', f'--config={DEFAULT}', *_overrides(WRONG_TYPE),
                      f'--workdir={tmp_path / "run"}', cwd=tmp_path,
                      check=False, env={'JAX_PLATFORMS': 'cpu'})
  lines = _assert_refused(result, WRONG_TYPE, tmp_path, user_error)
  for field, value in WRONG_TYPE.items():
    (line,) = [l for l in lines if _names(l, field)]
    kind = type(FIELDS[field])
    assert f'{value!r} is not' in line and f'({field} is' in line
    assert f'e.g. --config.{field}=' in line, line
    assert {int: 'whole number', float: 'number', bool: 'true or false'}[kind] \
        in line


def test_sweep_py_refuses_every_out_of_range_value_at_once(
    run_script, user_error, tmp_path):
  result = run_script('sweep.py', f'--config={DEFAULT}', '--config.init=noise',
                      *_overrides(OUT_OF_RANGE_SWEEP),
                      f'--workdir={tmp_path / "run"}', cwd=tmp_path,
                      check=False, env={'JAX_PLATFORMS': 'cpu'})
  _assert_refused(result, OUT_OF_RANGE_SWEEP, tmp_path, user_error)


# --- The same steps in this process ----------------------------------------------

def test_wrong_types_are_found_before_parsing(script_config):
  # run.py's table above; here every such problem as check_config_argv
  # reports it, in the order given.
  with pytest.raises(UserError) as e:
    script_config(f'--config={DEFAULT}', *_overrides(WRONG_TYPE))
  lines = str(e.value).splitlines()
  _assert_one_line_each(lines, WRONG_TYPE)
  assert [next(f for f in WRONG_TYPE if _names(l, f)) for l in lines] == list(
      WRONG_TYPE)


@pytest.mark.parametrize('table,good,sweep', [
    (OUT_OF_RANGE_VALUES, [], False),
    (OUT_OF_RANGE_INPUTS, [], False),
    (OUT_OF_RANGE_SWEEP, ['--config.init=noise'], True),
    (OUT_OF_RANGE_SWEEP_INPUTS, [], True),
], ids=['run-values', 'run-inputs', 'sweep-values', 'sweep-inputs'])
def test_every_out_of_range_value_at_once(table, good, sweep, tmp_path,
                                          script_config):
  config = script_config(f'--config={DEFAULT}', *good, *_overrides(table))
  with pytest.raises(UserError) as e:
    spec.parse(config, tmp_path / 'run', sweep=sweep)
  _assert_one_line_each(str(e.value).splitlines(), table)
  assert list(tmp_path.iterdir()) == [], 'a refused config wrote files'


@pytest.mark.parametrize('case', list(REGION_CASES))
def test_each_bad_region_value_is_one_line(case, tmp_path, script_config):
  overrides, field, message = REGION_CASES[case]
  if overrides['content_regions'] == 'SPECK':
    # A white label image with a red 24 px square: a region of the label
    # image (1.2% of it), but 0.14 of a position at block5 at 64 px.
    from PIL import Image  # pylint: disable=import-outside-toplevel
    speck = Image.new('RGB', (256, 192), 'white')
    speck.paste((255, 0, 0), (100, 80, 124, 104))
    speck.save(tmp_path / 'speck.png')
    overrides = {**overrides, 'content_regions': tmp_path / 'speck.png'}
  config = script_config(f'--config={DEFAULT}', *_overrides(overrides))
  with pytest.raises(UserError) as e:
    spec.parse(config, tmp_path / 'run')
  (line,) = str(e.value).splitlines()
  assert _names(line, field) and re.search(message, line), line


# --- cli.check_config_argv in this process -------------------------------------

def _check(*args: str, config: str = str(DEFAULT)) -> list[str]:
  return cli.check_config_argv(['prog', f'--config={config}', *args])


def _problems(*args: str, config: str = str(DEFAULT)) -> list[str]:
  with pytest.raises(UserError) as e:
    _check(*args, config=config)
  return str(e.value).splitlines()


@pytest.mark.parametrize('typed,meant', [
    ('stlye_weight', 'style_weight'),     # a close name beside it
    ('style_weights', 'style_weight'),    # not 'style' + '_weights'
    ('content_image', 'content'),         # a field the name starts with
    ('chunk', 'sweep.chunk'),             # the name in another section
    ('mode', 'sweep.mode'),
    ('sweep.stlye_weight', 'sweep.style_weight'),
    ('sweep.image_size', 'image_size'),
])
def test_unknown_field_names_the_nearest(typed, meant):
  assert _problems(f'--config.{typed}=1') == [
      f'--config.{typed}: unknown field; did you mean {meant}?']


def test_unknown_field_without_a_near_one():
  assert _problems('--config.xyzzy=1') == [
      '--config.xyzzy: unknown field; configs/default.py lists every field']


def test_all_problems_are_reported_together():
  problems = _problems('--config.stlye_weight=3', '--config.image_size=abc',
                       '--config.style_weight=high', '--config.sweep=3',
                       '--config.style_weight.x=2', '--config.seed')
  assert problems == [
      '--config.stlye_weight: unknown field; did you mean style_weight?',
      "--config.image_size=abc: 'abc' is not a whole number (image_size is an "
      'int); e.g. --config.image_size=512',
      "--config.style_weight=high: 'high' is not a number (style_weight is a "
      'float); e.g. --config.style_weight=0.03',
      '--config.sweep: sweep is a section: set its fields, e.g. '
      '--config.sweep.batch=...',   # ConfigDict lists its keys sorted
      # A field under a value: the value is the nearest field.
      '--config.style_weight.x: unknown field; did you mean style_weight?',
      '--config.seed: no value given; e.g. --config.seed=0',
  ]


@pytest.mark.parametrize('args,expected', [
    # Whole numbers with an exponent or a point: rewritten for absl.
    (['--config.max_iterations=1e3'], ['--config.max_iterations=1000']),
    (['--config.image_size=256.0'], ['--config.image_size=256']),
    (['--config.image_size', '256'], ['--config.image_size=256']),
    (['--config.seed=0x10'], ['--config.seed=0x10']),  # absl's own int syntax
    (['--config.seed=-1'], ['--config.seed=-1']),      # range: the spec's job
    (['--config.style_weight', '1e3'], ['--config.style_weight=1e3']),
    (['--config.style=a,b', '--config.sweep.seed=0,1'],
     ['--config.style=a,b', '--config.sweep.seed=0,1']),
    (['--config.deterministic'], ['--config.deterministic=true']),
    (['--noconfig.deterministic'], ['--config.deterministic=false']),
    (['--config.deterministic=F'], ['--config.deterministic=F']),
    (['--config.deterministic', 'false'], ['--config.deterministic=false']),
    (['--workdir=x', '--', 'y'], ['--workdir=x', '--', 'y']),
])
def test_good_overrides_pass(args, expected):
  assert _check(*args) == ['prog', f'--config={DEFAULT}', *expected]


def test_a_flag_is_not_taken_as_a_value():
  assert _problems('--config.image_size', '--workdir=x') == [
      '--config.image_size: no value given; e.g. --config.image_size=512']


def test_only_booleans_take_no():
  assert _problems('--noconfig.seed') == [
      '--noconfig.seed: only a true/false field takes the --no prefix; e.g. '
      '--config.seed=0']


def test_overrides_after_double_dash_are_checked():
  # config_flags reads them from all of argv, and would fail on them.
  assert _problems('--', '--config.xyzzy=1')[0].startswith('--config.xyzzy:')


def test_override_before_config_is_refused():
  with pytest.raises(UserError, match='comes before --config'):
    cli.check_config_argv(['prog', '--config.seed=1', f'--config={DEFAULT}'])


def test_no_config_flag_checks_nothing():
  # scripts ask for --config themselves (cli.checked_config).
  assert cli.check_config_argv(['prog', '--config.xyzzy=1']) == [
      'prog', '--config.xyzzy=1']


# --- Loading config files -----------------------------------------------------

@pytest.mark.parametrize('variant,style_loss,image_size', [
    ('', 'sliced_wasserstein', 512),
    (':quick', 'sliced_wasserstein', 64),
    (':mean_cov', 'mean_cov', 512),
    (':sliced_wasserstein', 'sliced_wasserstein', 512),
    (':mean_cov,quick', 'mean_cov', 64),
    (':sliced_wasserstein,quick', 'sliced_wasserstein', 64),
])
def test_style_losses_variants(variant, style_loss, image_size):
  config = cli.load_config_file(f'{REPO}/configs/style_losses.py{variant}')
  assert (config.style_loss, config.image_size) == (style_loss, image_size)


@pytest.mark.parametrize('argument,message', [
    ('configs/starry.py:bogus',
     "configs/starry.py:bogus: unknown config variant 'bogus'"),
    ('configs/style_losses.py:bogus', "use ':sliced_wasserstein' (the "
     "default), ':mean_cov', ':quick', ':mean_cov,quick' or"),
    ('configs/style_losses.py:quick,mean_cov', ":mean_cov,quick"),
    ('configs/default.py:quick', "default.py takes no variant: drop ':quick'"),
    ('configs/from_file.py', 'from_file.py needs a file'),
    ('configs/no_such.py', 'no_such.py is not a file'),
])
def test_bad_config_file_is_one_line(argument, message):
  with pytest.raises(UserError) as e:
    cli.load_config_file(f'{REPO}/{argument}')
  assert len(str(e.value).splitlines()) == 1
  assert message in str(e.value)


def test_config_variants_from_docstring_are_named(tmp_path):
  # preserve_color's ':histogram' is missing from apply_variant's message.
  with pytest.raises(UserError) as e:
    cli.load_config_file(f'{REPO}/configs/preserve_color.py:bogus')
  assert str(e.value).endswith('(its docstring shows :histogram, :quick)')


@pytest.mark.parametrize('source,message', [
    ('def get_config(:\n',
     'does not load: SyntaxError: invalid syntax (broken.py, line 1)'),
    ('import no_such_module\n', "ModuleNotFoundError: No module named "
     "'no_such_module'"),
    ('X = 1\n', 'has no get_config()'),
    ('def get_config():\n  return {}["a"]\n',
     "get_config() in {path} failed: KeyError: 'a' ({path}, line 2)"),
    ('def get_config():\n  return {}\n', 'returned a dict'),
])
def test_broken_config_file_is_one_line(tmp_path, source, message):
  path = tmp_path / 'broken.py'
  path.write_text(source)
  with pytest.raises(UserError) as e:
    cli.load_config_file(str(path))
  assert len(str(e.value).splitlines()) == 1
  assert message.format(path=path) in str(e.value)
