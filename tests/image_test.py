"""Tests for nst_jax.image: loading, saving and finding named images.

Test images are made with Pillow in tmp_path. The shared test images are read
from $NST_ASSETS_DIR (CI: ../shared/images) and never copied into the repo;
tests that need them skip when it is unset. Downloads go to a local
http.server, never the internet.
"""

import errno
import hashlib
import http.server
import io
import logging
import os
import re
import shutil
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst_jax import files
from nst_jax import image
from nst_jax.errors import UserError

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _save(tmp_path: Path, pil: Image.Image, name: str, **kwargs) -> Path:
  path = tmp_path / name
  pil.save(path, **kwargs)
  return path


def _shared_dir() -> Path:
  """$NST_ASSETS_DIR, or skip the test when it is not set."""
  root = os.environ.get(image.ASSETS_DIR_ENV)
  if not root:
    pytest.skip(f'{image.ASSETS_DIR_ENV} is not set')
  return Path(root)


# ---------------------------------------------------------------------------
# Mode conversion.


def test_rgb_png_values_are_exact(tmp_path):
  pil = Image.new('RGB', (2, 1))
  pil.putpixel((0, 0), (0, 128, 255))
  pil.putpixel((1, 0), (10, 20, 30))
  out = image.load_image(_save(tmp_path, pil, 'rgb.png'))
  assert out.dtype == np.float32 and out.shape == (1, 2, 3)
  assert out.flags.c_contiguous
  np.testing.assert_array_equal(out * 255, [[[0, 128, 255], [10, 20, 30]]])


def test_rgba_is_composited_on_white(tmp_path):
  pil = Image.new('RGBA', (3, 1))
  pil.putpixel((0, 0), (10, 20, 30, 0))  # Transparent: colour must not leak.
  pil.putpixel((1, 0), (255, 0, 0, 255))
  pil.putpixel((2, 0), (0, 0, 0, 128))
  out = image.load_image(_save(tmp_path, pil, 'rgba.png'))
  np.testing.assert_array_equal(out[0, 0], [1, 1, 1])
  np.testing.assert_array_equal(out[0, 1], [1, 0, 0])
  np.testing.assert_allclose(out[0, 2], 127 / 255, atol=1 / 255)


def test_la_is_composited_on_white(tmp_path):
  pil = Image.new('LA', (2, 1))
  pil.putpixel((0, 0), (100, 0))
  pil.putpixel((1, 0), (100, 255))
  out = image.load_image(_save(tmp_path, pil, 'la.png'))
  np.testing.assert_array_equal(out[0, 0], [1, 1, 1])
  np.testing.assert_allclose(out[0, 1], 100 / 255)


def _palette_image() -> Image.Image:
  pil = Image.new('P', (2, 1))
  pil.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 - 2) * 3)
  pil.putpixel((0, 0), 0)
  pil.putpixel((1, 0), 1)
  return pil


def test_palette_without_transparency(tmp_path):
  out = image.load_image(_save(tmp_path, _palette_image(), 'p.png'))
  np.testing.assert_array_equal(out[0], [[1, 0, 0], [0, 0, 1]])


def test_palette_with_transparency(tmp_path):
  path = _save(tmp_path, _palette_image(), 'p_trns.png', transparency=0)
  assert Image.open(path).mode == 'P'
  out = image.load_image(path)
  np.testing.assert_array_equal(out[0], [[1, 1, 1], [0, 0, 1]])


def test_gif_with_transparency(tmp_path):
  path = _save(tmp_path, _palette_image(), 'p.gif', transparency=1)
  out = image.load_image(path)
  np.testing.assert_array_equal(out[0], [[1, 0, 0], [1, 1, 1]])


def test_pa_tiff(tmp_path):
  pil = Image.new('PA', (1, 1))
  pil.putpalette([0, 255, 0] + [0] * 765)
  pil.putpixel((0, 0), (0, 0))
  out = image.load_image(_save(tmp_path, pil, 'pa.tif'))
  np.testing.assert_array_equal(out[0, 0], [1, 1, 1])


def test_rgb_with_trns_chunk(tmp_path):
  pil = Image.new('RGB', (2, 1), (5, 6, 7))
  pil.putpixel((1, 0), (0, 255, 0))
  path = _save(tmp_path, pil, 'rgb_trns.png', transparency=(5, 6, 7))
  out = image.load_image(path)
  np.testing.assert_array_equal(out[0], [[1, 1, 1], [0, 1, 0]])


def test_cmyk(tmp_path):
  pil = Image.new('CMYK', (3, 1))
  pil.putpixel((0, 0), (0, 0, 0, 0))
  pil.putpixel((1, 0), (0, 0, 0, 255))
  pil.putpixel((2, 0), (255, 0, 0, 0))
  out = image.load_image(_save(tmp_path, pil, 'cmyk.tif'))
  np.testing.assert_array_equal(out[0], [[1, 1, 1], [0, 0, 0], [0, 1, 1]])


def test_cmyk_jpeg(tmp_path):
  path = _save(tmp_path, Image.new('CMYK', (8, 8), (0, 0, 0, 0)), 'c.jpg')
  out = image.load_image(path)
  assert out.shape == (8, 8, 3)
  np.testing.assert_allclose(out, 1, atol=2 / 255)


@pytest.mark.parametrize('mode, color, rgb', [
    ('YCbCr', (255, 128, 128), (1, 1, 1)),
    ('LAB', (255, 128, 128), (1, 1, 1)),
])
def test_other_colour_spaces(tmp_path, mode, color, rgb):
  path = _save(tmp_path, Image.new(mode, (2, 2), color), f'{mode}.tif')
  assert Image.open(path).mode == mode
  np.testing.assert_allclose(image.load_image(path), np.broadcast_to(
      rgb, (2, 2, 3)), atol=2 / 255)


@pytest.mark.parametrize('mode', ['L', '1'])
def test_grayscale_becomes_three_equal_channels(tmp_path, mode):
  pil = Image.new(mode, (2, 1))
  pil.putpixel((1, 0), 255)
  out = image.load_image(_save(tmp_path, pil, f'{mode}.png'))
  assert out.shape == (1, 2, 3)
  np.testing.assert_array_equal(out[0], [[0, 0, 0], [1, 1, 1]])


def test_16bit_png_keeps_precision(tmp_path):
  values = np.array([[0, 1, 32768, 65535]], np.uint16)
  path = _save(tmp_path, Image.fromarray(values), '16.png')
  assert Image.open(path).mode.startswith('I;16')
  out = image.load_image(path)
  assert out.shape == (1, 4, 3)
  np.testing.assert_allclose(out[0, :, 0], values[0] / 65535, rtol=1e-6)
  assert 0 < out[0, 1, 0] < 0.5 / 255  # Would be 0 if squeezed to 8 bits.
  np.testing.assert_allclose(out[0, 2], 0.5, atol=1e-4)
  assert out[0, 3, 0] == 1.0


def test_16bit_big_endian_tiff(tmp_path):
  # Not .convert('I;16B'): Pillow clamps that conversion to 255.
  pil = Image.frombytes('I;16B', (2, 1),
                        np.array([32768, 65535], '>u2').tobytes())
  path = _save(tmp_path, pil, '16b.tif')
  assert Image.open(path).mode == 'I;16B'
  out = image.load_image(path)
  np.testing.assert_allclose(out[0, :, 1], [0.5, 1.0], atol=1e-4)


def test_16bit_resize_stays_float(tmp_path):
  values = np.full((4, 4), 1, np.uint16)  # Below half an 8-bit step.
  out = image.load_image(_save(tmp_path, Image.fromarray(values), 'g.png'), 8)
  assert out.shape == (8, 8, 3)
  np.testing.assert_allclose(out, 1 / 65535, rtol=1e-3)


def test_int32_and_float_tiffs(tmp_path):
  ints = Image.fromarray(np.array([[0, 65535, 99999]], np.int32))
  assert ints.mode == 'I'
  out = image.load_image(_save(tmp_path, ints, 'i.tif'))
  np.testing.assert_allclose(out[0, :, 0], [0, 1, 1])
  floats = Image.fromarray(np.array([[0.25, -1.0, 2.0]], np.float32))
  out = image.load_image(_save(tmp_path, floats, 'f.tif'))
  np.testing.assert_allclose(out[0, :, 2], [0.25, 0, 1])


# ---------------------------------------------------------------------------
# Orientation, size and resizing.


def _exif_rotated_jpeg(tmp_path: Path, orientation: int) -> Path:
  """32 wide x 16 high as stored: left half red, right half blue."""
  pil = Image.new('RGB', (32, 16), BLUE)
  pil.paste(RED, (0, 0, 16, 16))
  exif = Image.Exif()
  exif[0x0112] = orientation
  return _save(tmp_path, pil, f'o{orientation}.jpg', exif=exif.tobytes(),
               quality=95)


def test_exif_orientation_6_rotates_clockwise(tmp_path):
  path = _exif_rotated_jpeg(tmp_path, 6)
  assert image.read_image_size(path) == (32, 16)
  out = image.load_image(path)
  assert out.shape == (32, 16, 3)
  # Orientation 6: the stored left edge is the displayed top.
  np.testing.assert_allclose(out[4, 8], [1, 0, 0], atol=0.1)
  np.testing.assert_allclose(out[28, 8], [0, 0, 1], atol=0.1)
  assert image.load_image(path, long_side=8).shape == (8, 4, 3)
  assert image.resized_hw(image.read_image_size(path), 8) == (8, 4)


def test_exif_orientation_3_keeps_shape(tmp_path):
  path = _exif_rotated_jpeg(tmp_path, 3)
  assert image.read_image_size(path) == (16, 32)
  out = image.load_image(path)
  assert out.shape == (16, 32, 3)
  np.testing.assert_allclose(out[8, 28], [1, 0, 0], atol=0.1)  # Turned 180.


def test_tiny_image(tmp_path):
  path = _save(tmp_path, Image.new('RGB', (1, 1), (0, 255, 0)), 'one.png')
  out = image.load_image(path)
  np.testing.assert_array_equal(out, [[[0, 1, 0]]])
  np.testing.assert_allclose(image.load_image(path, 4), np.broadcast_to(
      [0, 1, 0], (4, 4, 3)), atol=1e-6)


def test_long_side_resize_shape(tmp_path):
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (20, 30, 3), np.uint8)
  path = _save(tmp_path, Image.fromarray(pixels), 'wide.png')
  out = image.load_image(path, long_side=9)
  assert out.shape == (6, 9, 3)
  assert out.min() >= 0 and out.max() <= 1
  assert image.load_image(path, long_side=60).shape == (40, 60, 3)
  assert image.resized_hw(image.read_image_size(path), 9) == (6, 9)
  assert image.read_image_size(path) == (20, 30)


def test_resized_hw():
  assert image.resized_hw((834, 1200), 512) == (356, 512)
  assert image.resized_hw((1200, 942), 512) == (512, 402)
  assert image.resized_hw((3, 4), 2) == (2, 2)  # 1.5 rounds half up.
  assert image.resized_hw((1, 1000), 10) == (1, 10)  # Never below 1.
  assert image.resized_hw((7, 5), None) == (7, 5)


@pytest.mark.parametrize('long_side', [0, -3, 2.5, True, '512'])
def test_bad_long_side(tmp_path, long_side):
  path = _save(tmp_path, Image.new('RGB', (2, 2)), 'x.png')
  with pytest.raises(UserError, match='long_side'):
    image.load_image(path, long_side)


# ---------------------------------------------------------------------------
# Bad files and size limits.


def test_missing_file(tmp_path):
  with pytest.raises(UserError, match='not found.*nope.png'):
    image.load_image(tmp_path / 'nope.png')


def test_directory(tmp_path):
  with pytest.raises(UserError, match='is a directory'):
    image.load_image(tmp_path)


def test_not_an_image(tmp_path):
  path = tmp_path / 'notes.jpg'
  path.write_text('hello, not a JPEG')
  with pytest.raises(UserError, match='notes.jpg is not an image'):
    image.load_image(path)
  with pytest.raises(UserError, match='notes.jpg is not an image'):
    image.read_image_size(path)


@pytest.mark.parametrize('suffix', ['jpg', 'png'])
def test_truncated_file(tmp_path, suffix):
  rng = np.random.default_rng(0)
  noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8))
  path = _save(tmp_path, noise, f'cut.{suffix}')
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])
  with pytest.raises(UserError, match=f'cut.{suffix} is truncated or corrupt'):
    image.load_image(path)


def _png_header(width: int, height: int) -> bytes:
  """A PNG with only IHDR and IEND: claims any size, costs 45 bytes."""
  def chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack('>I', len(data)) + kind + data
            + struct.pack('>I', zlib.crc32(kind + data)))
  ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
  return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IEND', b'')


def test_huge_image_refused_from_header(tmp_path):
  path = tmp_path / 'bomb.png'
  path.write_bytes(_png_header(100_000, 50_000))
  assert image.read_image_size(path) == (50_000, 100_000)
  with pytest.raises(UserError, match=r'100000x50000 .*5000\.0 MP.*GiB'):
    image.load_image(path)
  # PNGs cannot be shrunk while decoding, so long_side does not help.
  with pytest.raises(UserError, match='only JPEGs'):
    image.load_image(path, long_side=512)


def test_big_jpeg_is_decoded_at_reduced_scale(tmp_path):
  pil = Image.new('RGB', (64, 48), RED)
  path = _save(tmp_path, pil, 'big.jpg', quality=95)
  with pytest.raises(UserError, match='64x48'):
    image.load_image(path, max_pixels=1000)
  # 1/2 scale is 32x24 = 768 pixels, under the limit.
  out = image.load_image(path, long_side=16, max_pixels=1000)
  assert out.shape == (12, 16, 3)
  np.testing.assert_allclose(out, np.broadcast_to([1, 0, 0], out.shape),
                             atol=0.05)
  with pytest.raises(UserError, match='64x48'):
    image.load_image(path, long_side=16, max_pixels=40)  # 1/8 is 8x6 = 48.


# ---------------------------------------------------------------------------
# Saving.


def test_save_round_trip_with_metadata(tmp_path):
  rng = np.random.default_rng(0)
  pixels = rng.random((5, 7, 3), np.float32)
  metadata = {'Software': 'nst_jax', 'Comment': 'Tübingen – ✓',
              'config': 'x' * 5000}
  path = image.save_png(tmp_path / 'out.png', pixels, metadata)
  assert path == tmp_path / 'out.png'
  assert image.read_png_metadata(path) == metadata
  loaded = image.load_image(path)
  np.testing.assert_array_equal(loaded * 255, np.round(pixels * 255))
  # Re-saving what was loaded gives the same bytes.
  again = image.save_png(tmp_path / 'again.png', loaded, metadata)
  assert again.read_bytes() == path.read_bytes()


def test_save_clips_and_rounds(tmp_path):
  pixels = np.array([[[-0.5, 1.5, 0.5], [1 / 255, 0.499 / 255, 0.501 / 255]]])
  path = image.save_png(tmp_path / 'c.png', pixels)
  np.testing.assert_array_equal(np.asarray(Image.open(path)),
                                [[[0, 255, 128], [1, 0, 1]]])
  assert image.read_png_metadata(path) == {}


def test_save_is_deterministic(tmp_path):
  pixels = np.linspace(0, 1, 4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3)
  a = image.save_png(tmp_path / 'a.png', pixels, {'k': 'v'})
  b = image.save_png(tmp_path / 'b.png', pixels, {'k': 'v'})
  assert a.read_bytes() == b.read_bytes()


def test_save_leaves_no_temp_files(tmp_path, monkeypatch):
  pixels = np.zeros((2, 2, 3), np.float32)
  image.save_png(tmp_path / 'out.png', pixels)
  image.save_png(tmp_path / 'out.png', pixels + 1)  # Overwrite.
  assert os.listdir(tmp_path) == ['out.png']

  def fail(*args, **kwargs):
    raise OSError(28, 'No space left on device')
  monkeypatch.setattr(Image.Image, 'save', fail)
  with pytest.raises(UserError, match='No space left'):
    image.save_png(tmp_path / 'new.png', pixels)
  assert os.listdir(tmp_path) == ['out.png']  # Old file intact, no temp.
  np.testing.assert_array_equal(image.load_image(tmp_path / 'out.png'), 1)


def test_save_creates_folders(tmp_path):
  path = image.save_png(tmp_path / 'a' / 'b' / 'x.png', np.zeros((1, 1, 3)))
  assert path.is_file()


def test_save_to_unwritable_folder(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('')
  with pytest.raises(UserError, match=re.escape(str(blocker))):
    image.save_png(blocker / 'x.png', np.zeros((1, 1, 3)))


def test_save_to_a_folder_it_may_not_write(tmp_path, monkeypatch):
  # The refusal a read-only folder gives, injected where the file is created:
  # chmod binds everyone but root, and CI runs as root.
  folder = tmp_path / 'read_only'
  folder.mkdir()
  real_open = os.open

  def refusing_open(path, flags, *args, **kwargs):
    if Path(path).parent == folder and flags & os.O_CREAT:
      raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    return real_open(path, flags, *args, **kwargs)

  monkeypatch.setattr(os, 'open', refusing_open)
  with pytest.raises(UserError, match=(
      f'^cannot write to the folder {re.escape(str(folder))} '
      r'\(Permission denied\); check its permissions')):
    image.save_png(folder / 'x.png', np.zeros((1, 1, 3)))
  assert os.listdir(folder) == []


@pytest.mark.parametrize('bad, message', [
    (np.zeros((2, 2)), r'wants floats \[H, W, 3\] .*float64\[2, 2\]'),
    (np.zeros((2, 2, 4)), r'float64\[2, 2, 4\]'),
    (np.zeros((2, 2, 3), np.uint8), r'wants floats .*uint8\[2, 2, 3\]'),
    (np.full((1, 1, 3), np.nan), 'x.png contains NaN')])
def test_save_rejects_bad_arrays(tmp_path, bad, message):
  with pytest.raises(ValueError, match=message):
    image.save_png(tmp_path / 'x.png', bad)
  assert not (tmp_path / 'x.png').exists()


@pytest.mark.parametrize('metadata', [{'': 'v'}, {' k': 'v'}, {'k' * 80: 'v'},
                                      {'k': 3}, {'k': 'a\0b'}])
def test_save_rejects_bad_metadata(tmp_path, metadata):
  with pytest.raises(ValueError, match='metadata'):
    image.save_png(tmp_path / 'x.png', np.zeros((1, 1, 3)), metadata)


def test_read_metadata_of_non_png(tmp_path):
  path = _save(tmp_path, Image.new('RGB', (2, 2)), 'x.jpg')
  with pytest.raises(UserError, match='not a PNG'):
    image.read_png_metadata(path)


# ---------------------------------------------------------------------------
# Named images.


def test_registry_entries():
  assert len(image.ASSETS) == 13
  for name, asset in image.ASSETS.items():
    assert asset.subfolder in ('content', 'style'), name
    assert re.fullmatch(r'[0-9a-f]{64}', asset.sha256), name
    if asset.url is None:
      assert asset.no_url_reason, name
    else:
      # Pinned to a commit, so the bytes cannot change under the checksum.
      assert re.match(r'https://raw\.githubusercontent\.com/[^/]+/[^/]+/'
                      r'[0-9a-f]{40}/', asset.url), name


def test_registry_sha256_matches_shared_images():
  root = _shared_dir()
  for name, asset in image.ASSETS.items():
    path = root / asset.subfolder / asset.file
    assert files.sha256_file(path) == asset.sha256, name


def test_shared_images_resolve_and_load(monkeypatch):
  root = _shared_dir()
  monkeypatch.setenv(image.CACHE_DIR_ENV, '/nonexistent-cache')
  assert image.resolve_image('tubingen') == root / 'content' / 'tubingen.jpg'
  assert (image.resolve_image('starry_night.jpg')
          == root / 'style' / 'starry_night.jpg')
  assert (image.resolve_image('klimt_the_kiss_detail')
          == root / 'style' / 'klimt_the_kiss_detail.png')
  for name in image.ASSETS:
    path = image.resolve_image(name)
    out = image.load_image(path, long_side=64)
    hw = image.resized_hw(image.read_image_size(path), 64)
    assert out.shape == (*hw, 3), name
    assert max(out.shape[:2]) == 64


def test_assets_dir_flat_layout(tmp_path, monkeypatch):
  source = _shared_dir() / 'content' / 'chelsea.png'
  shutil.copy(source, tmp_path / 'chelsea.png')
  monkeypatch.setenv(image.ASSETS_DIR_ENV, str(tmp_path))
  assert image.resolve_image('chelsea') == tmp_path / 'chelsea.png'


def _fake_asset(url: str | None = None) -> tuple[image.Asset, bytes]:
  """A registry entry for a 3x2 PNG, and the PNG's bytes."""
  pil = Image.new('RGB', (3, 2), (1, 2, 3))
  buffer = io.BytesIO()
  pil.save(buffer, format='PNG')
  data = buffer.getvalue()
  return image.Asset('style', 'fake.png', hashlib.sha256(data).hexdigest(),
                     url, '' if url else 'made up for a test'), data


@pytest.fixture
def env(tmp_path, monkeypatch):
  """No NST_ASSETS_DIR, a fresh cache under tmp_path, no proxies, no sleeps."""
  monkeypatch.delenv(image.ASSETS_DIR_ENV, raising=False)
  monkeypatch.setenv(image.CACHE_DIR_ENV, str(tmp_path / 'cache'))
  for var in ('http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY'):
    monkeypatch.delenv(var, raising=False)
  monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')
  sleeps = []
  monkeypatch.setattr(files, '_sleep', sleeps.append)
  return sleeps


@pytest.mark.parametrize('layout', ['flat', 'subfolder'])
def test_assets_dir_layouts(tmp_path, monkeypatch, env, layout):
  del env
  asset, data = _fake_asset()
  folder = tmp_path / 'assets' / ('style' if layout == 'subfolder' else '')
  folder.mkdir(parents=True)
  (folder / 'fake.png').write_bytes(data)
  monkeypatch.setenv(image.ASSETS_DIR_ENV, str(tmp_path / 'assets'))
  assets = {'fake': asset}
  assert image.resolve_image('fake', assets=assets) == folder / 'fake.png'
  assert image.resolve_image('FAKE.png', assets=assets) == folder / 'fake.png'


def test_assets_dir_checksum_mismatch_warns_but_is_used(tmp_path, monkeypatch,
                                                        env, caplog):
  del env
  asset, _ = _fake_asset()
  (tmp_path / 'fake.png').write_bytes(b'other bytes')
  monkeypatch.setenv(image.ASSETS_DIR_ENV, str(tmp_path))
  with caplog.at_level(logging.WARNING, logger='nst_jax.image'):
    path = image.resolve_image('fake', assets={'fake': asset})
  assert path == tmp_path / 'fake.png'
  assert 'using it anyway' in caplog.text


def test_assets_dir_that_is_not_a_folder(tmp_path, monkeypatch, env):
  del env
  monkeypatch.setenv(image.ASSETS_DIR_ENV, str(tmp_path / 'missing'))
  with pytest.raises(UserError, match='NST_ASSETS_DIR=.*missing'):
    image.resolve_image('tubingen')


def test_existing_path_wins(tmp_path, env):
  del env
  path = _save(tmp_path, Image.new('RGB', (1, 1)), 'tubingen', format='PNG')
  assert image.resolve_image(path) == path
  assert image.resolve_image(str(path)) == path


def test_unknown_name_lists_names(env):
  del env
  with pytest.raises(UserError) as info:
    image.resolve_image('mona_lisa')
  message = str(info.value)
  assert "'mona_lisa'" in message and 'path' in message
  assert all(name in message for name in image.ASSETS)
  assert '\n' not in message


def test_asset_without_url_says_where_to_put_it(tmp_path, env):
  del env
  asset, _ = _fake_asset()
  with pytest.raises(UserError) as info:
    image.resolve_image('fake', assets={'fake': asset})
  message = str(info.value)
  assert 'NST_ASSETS_DIR' in message and 'made up for a test' in message
  assert str(tmp_path / 'cache' / 'images' / 'fake.png') in message


def test_cached_file_without_url_must_match(tmp_path, env):
  del env
  asset, data = _fake_asset()
  cache = tmp_path / 'cache' / 'images'
  cache.mkdir(parents=True)
  (cache / 'fake.png').write_bytes(data)
  assets = {'fake': asset}
  assert image.resolve_image('fake', assets=assets) == cache / 'fake.png'
  (cache / 'fake.png').write_bytes(b'junk')
  with pytest.raises(UserError, match='does not match the sha256'):
    image.resolve_image('fake', assets={'fake': asset})


class _Server:
  """A local HTTP server for one file, with scripted failures.

  Attributes:
    url: the file's URL.
    payload: the bytes served.
    fail_first: answer this many requests with 503 first.
    truncate_first: cut the body in half on this many requests after those.
    status: if set, answer every request with this status.
    requests: how many requests came in.
  """

  def __init__(self, payload: bytes):
    self.payload = payload
    self.fail_first = 0
    self.truncate_first = 0
    self.status: int | None = None
    self.requests = 0
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def log_message(self, *args):
        del args

      def do_GET(self):  # pylint: disable=invalid-name
        server.requests += 1
        if server.status or server.requests <= server.fail_first:
          self.send_error(server.status or 503)
          return
        body = server.payload
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if server.requests <= server.fail_first + server.truncate_first:
          body = body[:len(body) // 2]
        self.wfile.write(body)

    self._httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    self.url = f'http://127.0.0.1:{self._httpd.server_port}/fake.png'
    # A short poll interval keeps shutdown() (and so each test) fast.
    self._thread = threading.Thread(target=self._httpd.serve_forever,
                                    kwargs={'poll_interval': 0.01}, daemon=True)
    self._thread.start()

  def close(self):
    self._httpd.shutdown()
    self._httpd.server_close()


@pytest.fixture
def served(tmp_path, env):
  """(server, assets, cache path): a fake asset whose URL is a local server."""
  del env
  asset, data = _fake_asset()
  server = _Server(data)
  assets = {'fake': asset._replace(url=server.url, no_url_reason='')}
  yield server, assets, tmp_path / 'cache' / 'images' / 'fake.png'
  server.close()


def _no_leftovers(path: Path) -> bool:
  """Whether `path`'s folder holds nothing but `path` (if it exists)."""
  return os.listdir(path.parent) == ([path.name] if path.exists() else [])


def test_download(served, env):
  server, assets, cached = served
  assert image.resolve_image('fake', assets=assets) == cached
  assert cached.read_bytes() == server.payload
  assert _no_leftovers(cached) and env == []
  np.testing.assert_allclose(image.load_image(cached)[0, 0] * 255, [1, 2, 3])
  # Found in the cache the second time: no new request.
  assert image.resolve_image('fake', assets=assets) == cached
  assert server.requests == 1


def test_download_wrong_checksum(served):
  server, assets, cached = served
  assets['fake'] = assets['fake']._replace(sha256='0' * 64)
  with pytest.raises(UserError) as info:
    image.resolve_image('fake', assets=assets)
  message = str(info.value)
  assert server.url in message and str(cached) in message
  assert 'NST_ASSETS_DIR' in message
  assert not cached.exists() and _no_leftovers(cached)
  assert server.requests == 1  # A wrong file is not retried.


def test_download_retries_after_server_error(served, env):
  server, assets, cached = served
  server.fail_first = 2
  assert image.resolve_image('fake', assets=assets) == cached
  assert cached.read_bytes() == server.payload
  assert env == [1.0, 2.0]  # Backoff doubles.


def test_download_gives_up_after_three_tries(served, env):
  server, assets, cached = served
  server.fail_first = 3
  with pytest.raises(UserError, match='after 3 tries.*503') as info:
    image.resolve_image('fake', assets=assets)
  assert f'save it as {cached}' in str(info.value)
  assert server.requests == 3 and len(env) == 2


def test_download_404_is_not_retried(served):
  server, assets, cached = served
  server.status = 404
  expected = f'after 1 try .*404.*{re.escape(str(cached))}'
  with pytest.raises(UserError, match=expected):
    image.resolve_image('fake', assets=assets)
  assert server.requests == 1


def test_download_retries_after_short_read(served, env):
  server, assets, cached = served
  server.truncate_first = 1
  assert image.resolve_image('fake', assets=assets) == cached
  assert cached.read_bytes() == server.payload
  assert server.requests == 2 and env == [1.0] and _no_leftovers(cached)


def test_corrupt_cache_is_downloaded_again(served):
  server, assets, cached = served
  cached.parent.mkdir(parents=True)
  cached.write_bytes(b'junk')
  assert image.resolve_image('fake', assets=assets) == cached
  assert cached.read_bytes() == server.payload


def test_unreachable_server(tmp_path, env):
  del env
  asset, _ = _fake_asset()
  # Port 9 (discard) on localhost is closed: connection refused, quickly.
  asset = asset._replace(url='http://127.0.0.1:9/fake.png')
  with pytest.raises(UserError, match='could not download http://127.0.0.1:9/'):
    image.resolve_image('fake', assets={'fake': asset})
