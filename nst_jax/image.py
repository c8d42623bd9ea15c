"""Image files in and out: named test images, loading as float RGB, saving PNGs.

The only module that touches image files; the rest of nst_jax works on
`float32[H, W, 3]` RGB in [0, 1]. `ASSETS` names the images of
shared/images/SOURCES.md and `resolve_image` finds or downloads them.
`load_image` decodes any Pillow mode, checking the size on the header first;
`save_png` writes an 8-bit RGB PNG atomically, with text metadata.
"""

import logging
import os
import re
import threading
import urllib.parse
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from nst_jax import files
from nst_jax.errors import UserError

log = logging.getLogger(__name__)

ASSETS_DIR_ENV = 'NST_ASSETS_DIR'
CACHE_DIR_ENV = 'NST_CACHE_DIR'

# Refuse to decode more pixels unless asked: at 4 bytes a pixel in Pillow
# (RGB is stored as RGBX) plus 12 in float32 RGB, 100 MP is about 1.6 GB.
DEFAULT_MAX_PIXELS = 100_000_000

_EXIF_ORIENTATION = 0x0112
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)  # Quarter turns: width <-> height.


class Asset(NamedTuple):
  """A named test image; shared/images/SOURCES.md says where each came from."""
  subfolder: str  # 'content' or 'style': its folder under $NST_ASSETS_DIR.
  file: str  # The file name, e.g. 'starry_night.jpg'.
  sha256: str  # Lower-case hex SHA-256 of the file's exact bytes.
  # A URL pinned to a commit whose file has exactly these bytes, or None where
  # no public copy has them; then no_url_reason says why, for the error.
  url: str | None
  no_url_reason: str = ''


def _asset(path: str, source: str, sha256: str) -> Asset:
  """Asset from '<subfolder>/<file>', the URL or why there is none, sha256."""
  url = source if source.startswith('https://') else None
  return Asset(*path.split('/'), sha256, url, '' if url else source)


def _github_raw(repo: str, commit: str, path: str) -> str:
  """The raw.githubusercontent.com URL of `path` in `repo` at `commit`."""
  return (f'https://raw.githubusercontent.com/{repo}/{commit}/'
          f'{urllib.parse.quote(path)}')


_GATYS = 'leongatys/PytorchNeuralStyleTransfer'
_GATYS_COMMIT = 'be6c8e2b35568669a5a0ac10b66c912207ad355d'
_RESIZED = 'resized from its source, so no public copy has these bytes'
_SKIMAGE = 'it comes from the scikit-image 0.26.0 wheel, not a URL'

ASSETS: Mapping[str, Asset] = {
    # Style images (paintings).
    'starry_night': _asset(
        'style/starry_night.jpg',
        _github_raw(_GATYS, _GATYS_COMMIT, 'Images/vangogh_starry_night.jpg'),
        '228bebf0dd424ea4f740d8d88a67f2960424c166e638086c1ec529260d2e3832'),
    'the_great_wave': _asset(
        'style/the_great_wave.jpg',
        'converted from Adobe RGB to sRGB, so no public copy has these bytes',
        'bac05e0bfecd0bdb711b05fdb0227eae1642bdb13ec08183c037203ae089c5d1'),
    'the_scream': _asset(
        'style/the_scream.jpg', _RESIZED,
        'cca625b487416bceb0cff0a714e5c20436b907e94ff1689d1f5c6c730db3db62'),
    'composition_vii': _asset(
        'style/composition_vii.jpg',
        _github_raw('jcjohnson/fast-neural-style',
                    '813c83441953ead2adb3f65f4cc2d5599d735fa7',
                    'images/styles/composition_vii.jpg'),
        '8f992ed4aecd6dd56972d7bc8166761de7c94e670ee6effa8fd05f3daeb33409'),
    'shipwreck_minotaur': _asset(
        'style/shipwreck_minotaur.jpg',
        _github_raw('lengstrom/fast-style-transfer',
                    '0d3d981f7ab948253d355585bdbdfa914247b4d0',
                    'examples/style/the_shipwreck_of_the_minotaur.jpg'),
        '05e6d80cee6b2df5c3425f8f59105e62804d8a7ffe688aa69739c1f787a09dd9'),
    'klimt_the_kiss': _asset(
        'style/klimt_the_kiss_detail.png',
        # This commit is only on the repository's pull request #6; GitHub still
        # serves raw files of it by hash.
        _github_raw(_GATYS, '213dc46c1a8cded5cf561f6a22596443836b0faa',
                    'Images/kiss.png'),
        'fcea4cbcfe3d6c6520f54381d4252316444de805328d7f7f31a29040c8bfdcc1'),
    'starry_night_over_the_rhone': _asset(
        'style/starry_night_over_the_rhone.jpg', _RESIZED,
        '286fb4794c1adf2f012582dd813f2c80454b338122f67f60ec9148c9971275b7'),
    # Content images (photographs).
    'tubingen': _asset(
        'content/tubingen.jpg',
        _github_raw(_GATYS, _GATYS_COMMIT, 'Images/Tuebingen_Neckarfront.jpg'),
        'e67d1869f01fd805385c681a80d9ebcf0f70ea4a5fe6127f0606bb1c7f4bf506'),
    'moraine_lake': _asset(
        'content/moraine_lake.jpg', _RESIZED,
        '917fbeca5b3b74fd31d3a78719f654714754be5fe1fdfc880b234c9f94718f55'),
    'london_street_rain': _asset(
        'content/london_street_rain.jpg', _RESIZED,
        '2ea6a0b7f231590d6c60466df334b2f82db45626e0a84ec3c8c9b194807680d5'),
    'neuschwanstein': _asset(
        'content/neuschwanstein.jpg', _RESIZED,
        '80d3961b6b3a618d717e22cd4d06572b80d48cdec85dde8e6f70ec4a595ac55d'),
    'astronaut': _asset(
        'content/astronaut.png', _SKIMAGE,
        '88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5'),
    'chelsea': _asset(
        'content/chelsea.png', _SKIMAGE,
        '596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb'),
}


# --- Finding named images -----------------------------------------------------


def image_cache_dir() -> Path:
  """Download cache: `$NST_CACHE_DIR/images`, else ~/.cache/nst_jax/images."""
  root = os.environ.get(CACHE_DIR_ENV)
  base = Path(root).expanduser() if root else Path.home() / '.cache' / 'nst_jax'
  return base / 'images'


def resolve_image(spec: str | os.PathLike[str], *,
                  assets: Mapping[str, Asset] | None = None) -> Path:
  """The local file for an image path or a registry name, downloading if needed.

  Order: `spec` as an existing file; else the name in `assets` (default
  `ASSETS`; also accepted as its file name or stem, e.g. 'starry_night.jpg')
  looked up as `$NST_ASSETS_DIR/<file>`, `$NST_ASSETS_DIR/<subfolder>/<file>`,
  `image_cache_dir()/<file>`, and last downloaded (pinned URL and SHA-256) into
  the cache. A file in `$NST_ASSETS_DIR` whose SHA-256 differs is used with a
  warning (the folder is the user's); a cached one is downloaded again, or
  refused when the image has no URL. Only existence is checked, not decoding.
  Raises UserError when `spec` is a directory, neither a file nor a known
  name, or a named image can be neither found nor downloaded.
  """
  assets = ASSETS if assets is None else assets
  path = files.user_path(spec)
  if path.is_file():
    return path
  if path.is_dir():
    raise UserError(f'{spec} is a directory, not an image; pass an image file '
                    'or a named image')
  key = str(spec).strip().lower()
  for name, asset in assets.items():
    if key in (name, asset.file.lower(), Path(asset.file).stem.lower()):
      return _find_asset(name, asset)
  raise UserError(
      f'{str(spec)!r} is neither an existing image file nor a known image '
      f'name; check the path, or use one of: {", ".join(sorted(assets))}')


def _find_asset(name: str, asset: Asset) -> Path:
  """The local file of registry entry `asset` (see `resolve_image`)."""
  assets_dir = os.environ.get(ASSETS_DIR_ENV)
  if assets_dir:
    try:
      root = files.user_path(assets_dir)
    except UserError as e:
      raise UserError(f'{ASSETS_DIR_ENV}={e}') from e
    if not root.is_dir():
      # Falling back to a download would hide the typo, so stop here.
      raise UserError(
          f'{ASSETS_DIR_ENV}={assets_dir} is not a directory (relative paths '
          f'count from {Path.cwd()}); point it at the folder with content/ and '
          'style/ (e.g. shared/images) or unset it')
    for candidate in (root / asset.file, root / asset.subfolder / asset.file):
      if candidate.is_file():
        digest = files.sha256_file(candidate)
        if digest != asset.sha256:
          log.warning('%s has sha256 %s, not the %s expected for %r; using it '
                      'anyway because it is in %s', candidate, digest,
                      asset.sha256, name, ASSETS_DIR_ENV)
        return candidate

  cached = image_cache_dir() / asset.file
  where = (f'put {asset.file} in ${ASSETS_DIR_ENV} or '
           f'${ASSETS_DIR_ENV}/{asset.subfolder}/ (e.g. {ASSETS_DIR_ENV}='
           f'shared/images), copy it to {cached}, or pass its path')
  if cached.is_file():
    if files.sha256_file(cached) == asset.sha256:
      return cached
    if asset.url is None:
      raise UserError(f'{cached} does not match the sha256 of {name!r} '
                      f'({asset.sha256}); delete it and {where}')
    log.warning('%s does not match the sha256 of %r; downloading it again',
                cached, name)
  if asset.url is None:
    raise UserError(f'{name!r} cannot be downloaded ({asset.no_url_reason}); '
                    f'{where}')
  try:
    return files.download(asset.url, cached, asset.sha256)
  except UserError as e:
    raise UserError(f'{e}, or set {ASSETS_DIR_ENV} to a folder that holds '
                    f'{asset.file}') from e


# --- Loading ------------------------------------------------------------------

_pillow_limit_lock = threading.Lock()


def _checked_path(path: str | os.PathLike[str]) -> Path:
  """`path` as a Path if it is an existing file, else a UserError saying why."""
  path = files.user_path(path)
  if not path.exists():
    raise UserError(f'image file not found: {path}; check the path')
  if path.is_dir():
    raise UserError(f'{path} is a directory, not an image file; pass the path '
                    'of an image file')
  return path


def _open_image(path: Path) -> Image.Image:
  """Pillow's lazy open (header only) of `path`, errors as UserError.

  Pillow's bomb check is off: callers apply their own limit, which may allow
  a huge JPEG that will be decoded at 1/8 scale.
  """
  try:
    with _pillow_limit_lock:
      saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
      try:
        return Image.open(path)
      finally:
        Image.MAX_IMAGE_PIXELS = saved
  except UnidentifiedImageError as e:
    raise UserError(f'{path} is not an image file Pillow can read; pass a '
                    'PNG, JPEG, TIFF, WebP or similar file') from e
  except PermissionError as e:
    raise UserError(f'cannot read {path} (permission denied); check its '
                    'permissions') from e
  except Exception as e:  # pylint: disable=broad-except
    # Corrupt headers surface as OSError, SyntaxError, ValueError, struct.error
    # and more, depending on the plugin.
    raise UserError(f'{path} is corrupt ({type(e).__name__}: {e}); re-export '
                    'or re-download it') from e


def read_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
  """(height, width) in pixels as displayed, from the header only.

  EXIF orientations 5-8 (a quarter turn) swap the stored width and height, as
  in `load_image`. Raises UserError for a missing file, a directory or not an
  image.
  """
  with _open_image(_checked_path(path)) as image:
    width, height = image.size
    try:
      # The base-class getexif reads only what the header parse found; PNG's
      # override would decode every pixel to look for a late eXIf chunk.
      orientation = Image.Image.getexif(image).get(_EXIF_ORIENTATION, 1)
    except Exception:  # pylint: disable=broad-except
      orientation = 1  # Unreadable EXIF is ignored, as load_image does.
  swapped = orientation in _SWAPPING_ORIENTATIONS
  return (width, height) if swapped else (height, width)


def resized_hw(hw: tuple[int, int], long_side: int | None) -> tuple[int, int]:
  """(height, width) after scaling so the long side is `long_side` pixels.

  The short side is rounded half up and kept >= 1; None keeps `hw` as is.
  Pure integer arithmetic: with `read_image_size`, the size `load_image`
  returns, known before decoding or compiling.
  """
  height, width = hw
  if height < 1 or width < 1:
    raise ValueError(f'image size must be positive, got {hw}')
  if long_side is None:
    return height, width
  long = max(height, width)
  return tuple(max(1, (2 * side * long_side + long) // (2 * long))
               for side in (height, width))


def _check_positive(name: str, value: int | None) -> None:
  """Raises UserError unless `value` is None or an int >= 1 (not a bool)."""
  if value is not None and (isinstance(value, bool)
                            or not isinstance(value, int) or value < 1):
    raise UserError(f'{name} must be a positive number of pixels, got '
                    f'{value!r}')


def _too_big(path: Path, size: tuple[int, int], max_pixels: int,
             long_side: int | None) -> UserError:
  (width, height), pixels = size, size[0] * size[1]
  # Pillow's 4 bytes a pixel; without a resize also 12 of float32 RGB.
  per_pixel = 4 + (12 if long_side is None else 0)
  fix = 'downscale the file first' + (
      '' if long_side is None else
      ', or save it as a JPEG (only JPEGs are shrunk while decoding)')
  return UserError(
      f'{path} is {width}x{height} pixels ({pixels / 1e6:.1f} MP), over the '
      f'{max_pixels / 1e6:g} MP limit; loading it needs about '
      f'{pixels * per_pixel / 2**30:.1f} GiB of memory; {fix}')


def _shrink_on_decode(image: Image.Image, path: Path, long_side: int | None,
                      max_pixels: int) -> None:
  """Makes `image` decode to <= max_pixels pixels (JPEG DCT scaling) or raises.

  Picks the smallest scale (1/2, 1/4, 1/8) that fits, so the Lanczos resize
  still starts from as many pixels as the limit allows.
  """
  width, height = image.size
  if long_side is not None:
    for scale in (2, 4, 8):
      if min(width, height) < scale:
        break
      drafted = (-(-width // scale), -(-height // scale))
      if drafted[0] * drafted[1] > max_pixels:
        continue
      # Pillow picks the largest scale s with size // request >= s, so
      # requesting size // scale gives exactly `scale`.
      if (image.draft(None, (width // scale, height // scale)) is not None
          and image.size == drafted):
        log.info('%s: decoding %dx%d at 1/%d scale to stay under %d pixels',
                 path, width, height, scale, max_pixels)
        return
      break  # This format cannot be shrunk while decoding.
  raise _too_big(path, (width, height), max_pixels, long_side)


# Modes that carry (or may carry, via info['transparency']) an alpha channel.
_ALPHA_MODES = ('RGBA', 'RGBa', 'LA', 'La', 'PA')
_HIGH_BIT_GRAY_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I', 'F')


def _to_float_rgb(image: Image.Image, hw: tuple[int, int]) -> np.ndarray:
  """A decoded image as float32[H, W, 3] in [0, 1], Lanczos-resized to `hw`.

  Transparent pixels are composited over white. High-bit-depth gray ('I;16*',
  'I', 'F') is resized as floats so no precision is lost to 8 bits. Pillow's
  resize widens the kernel when shrinking, i.e. antialiases.
  """
  size = hw[::-1]  # Pillow sizes are (width, height).
  if image.mode in _HIGH_BIT_GRAY_MODES:
    array = np.asarray(image).astype(np.float32)
    # 'I' holds 16-bit samples in practice (PNG, PGM, TIFF): more is clipped,
    # not guessed at. Float files have no range convention: [0, 1] assumed.
    if image.mode != 'F':
      array /= 65535.0
    array = np.clip(np.nan_to_num(array), 0.0, 1.0)
    if array.shape != hw:  # Mode 'F' keeps the precision through the resize.
      array = np.clip(np.asarray(Image.fromarray(array).resize(
          size, Image.Resampling.LANCZOS)), 0.0, 1.0)  # Lanczos overshoots.
  else:
    if image.mode in _ALPHA_MODES or 'transparency' in image.info:
      if image.mode == 'La':
        image = image.convert('LA')  # Pillow has no direct La -> RGBA.
      rgba = image.convert('RGBA')
      image = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
      image.alpha_composite(rgba)
      image = image.convert('RGB')
    elif image.mode not in ('L', 'RGB'):
      # 1-bit stays gray; P, CMYK, YCbCr, LAB, HSV, RGBX...: Pillow converts.
      image = image.convert('L' if image.mode == '1' else 'RGB')
    if image.size != size:
      image = image.resize(size, Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.float32) / 255.0
  return array if array.ndim == 3 else np.repeat(array[:, :, None], 3, axis=2)


def _decode(image: Image.Image, path: Path, long_side: int | None,
            max_pixels: int) -> None:
  """Decodes a lazily opened image in place (see `load_image`) or raises."""
  width, height = image.size
  if width * height > max_pixels:
    _shrink_on_decode(image, path, long_side, max_pixels)
  try:
    with warnings.catch_warnings():
      # Our own limit above already applies; Pillow's would only repeat it.
      warnings.simplefilter('ignore', Image.DecompressionBombWarning)
      image.load()  # Decode every pixel now, so truncation raises here.
  except Image.DecompressionBombError as e:
    raise _too_big(path, image.size, max_pixels, long_side) from e
  except MemoryError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'{path} is truncated or corrupt ({e}); re-export or '
                    're-download it') from e


def check_image(path: str | os.PathLike[str], long_side: int | None
                ) -> tuple[int, int]:
  """(height, width) as `read_image_size` gives them; raises at once the
  UserError that `load_image(path, long_side)` would: too many pixels, or
  pixels that do not decode. JPEGs are decoded at 1/8 scale (~10 ms at 12 MP),
  so that a run can refuse a bad photo before it writes anything."""
  hw = read_image_size(path)
  path = _checked_path(path)
  with _open_image(path) as image:
    width, height = image.size
    if width * height <= DEFAULT_MAX_PIXELS:
      image.draft(None, (max(1, width // 8), max(1, height // 8)))
    _decode(image, path, long_side, DEFAULT_MAX_PIXELS)
  return hw


def load_image(path: str | os.PathLike[str], long_side: int | None = None, *,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
  """Reads an image file as float32[H, W, 3] RGB in [0, 1], C-contiguous.

  Any Pillow mode works: transparency is composited over white, CMYK, YCbCr,
  LAB, palette, 1-bit and gray images become RGB, and 16-bit gray keeps its
  precision (65535 -> 1.0). The EXIF orientation is applied. Only the first
  frame of animations is read; ICC profiles are ignored (taken as sRGB).

  Args:
    path: an image file.
    long_side: if set, Lanczos-resize (antialiased) so that max(H, W) equals
      it, keeping the aspect ratio (see `resized_hw`); may upscale.
    max_pixels: refuse files whose header says width * height exceeds this,
      before decoding. With `long_side` set, a bigger JPEG is accepted if
      decoding it at 1/2, 1/4 or 1/8 scale fits.

  Raises:
    UserError: missing, unreadable, not an image, truncated or corrupt, too
      large, or a bad `long_side`.
  """
  _check_positive('long_side', long_side)
  _check_positive('max_pixels', max_pixels)
  path = _checked_path(path)
  with _open_image(path) as image:
    width, height = image.size
    _decode(image, path, long_side, max_pixels)
    try:
      decoded = ImageOps.exif_transpose(image)
    except Exception as e:  # pylint: disable=broad-except
      # Bad EXIF should not cost the pixels; read_image_size also ignores it.
      log.warning('%s: ignoring unreadable EXIF orientation (%s)', path, e)
      decoded = image.copy()
    # exif_transpose keeps the size or swaps the sides. The header's size,
    # not a 1/n-scale decode's, gives the same size as resized_hw(read_image_size).
    swapped = decoded.size != image.size
  target = resized_hw((width, height) if swapped else (height, width),
                      long_side)
  return np.ascontiguousarray(_to_float_rgb(decoded, target))


# --- Saving -------------------------------------------------------------------

_PNG_KEY_RE = re.compile(r'[\x20-\x7e\xa1-\xff]{1,79}')


def _png_info(metadata: Mapping[str, str] | None) -> PngImagePlugin.PngInfo:
  """Text chunks for `metadata`: tEXt for Latin-1 values, else UTF-8 iTXt."""
  info = PngImagePlugin.PngInfo()
  for key, value in (metadata or {}).items():
    # PNG keywords: 1-79 printable Latin-1, no edge or double spaces.
    if (not isinstance(key, str) or not _PNG_KEY_RE.fullmatch(key)
        or key != key.strip() or '  ' in key):
      raise ValueError(f'invalid PNG metadata key {key!r}: use 1-79 printable '
                       'Latin-1 characters without leading/trailing spaces')
    if not isinstance(value, str) or '\0' in value:
      raise ValueError(f'PNG metadata value for {key!r} must be a str without '
                       f'NUL characters, got {type(value).__name__}')
    # Compress long values (configs); small ones stay readable to any tool.
    info.add_text(key, value, zip=len(value) > 1024)
  return info


def save_png(path: str | os.PathLike[str], image: np.ndarray,
             metadata: Mapping[str, str] | None = None) -> Path:
  """Writes float[H, W, 3] RGB `image` as an 8-bit PNG atomically; returns path.

  Pixels are `round(clip(image, 0, 1) * 255)`; `image` may be numpy or jax.
  `files.atomic_write` creates missing folders and renames a fsynced temporary
  file over `path`, so readers never see half a PNG. The same input gives the
  same bytes. `metadata` becomes text chunks, in order (`read_png_metadata`).

  Raises:
    ValueError: `image` is not float[H, W, 3], contains NaN, or a metadata
      key/value is not storable in PNG.
    UserError: the folder cannot be created or written.
  """
  path = Path(path).expanduser()
  array = np.asarray(image)
  if (array.ndim != 3 or array.shape[2] != 3 or 0 in array.shape
      or array.dtype.kind in 'biu'):
    raise ValueError(f'save_png wants floats [H, W, 3] in [0, 1], got '
                     f'{array.dtype}{list(array.shape)}')
  array = array.astype(np.float32)
  if np.isnan(array).any():
    raise ValueError(f'image to save as {path} contains NaN')
  pixels = np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
  info = _png_info(metadata)
  if path.is_dir():
    raise UserError(f'{path} is a directory; give a file name ending in .png')
  return files.atomic_write(path, lambda f: Image.fromarray(pixels).save(
      f, format='PNG', pnginfo=info, compress_level=6))


def read_png_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
  """The text chunks (tEXt, zTXt, iTXt) of a PNG as {key: value}.

  Raises UserError when the file is missing, not a PNG, or corrupt.
  """
  path = _checked_path(path)
  try:
    with Image.open(path, formats=['PNG']) as image:
      return {str(k): str(v) for k, v in image.text.items()}
  except UnidentifiedImageError as e:
    raise UserError(f'{path} is not a PNG file; pass a PNG written by '
                    'save_png') from e
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'{path} is corrupt ({e}); re-create it') from e
