"""Tests for nst_jax/regions.py: label images, masks and the region mapping."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst_jax import image as image_lib
from nst_jax import losses
from nst_jax import regions
from nst_jax import vgg
from nst_jax.errors import UserError

REPO = Path(__file__).resolve().parents[1]
BLUE, WHITE = (0, 0, 255), (255, 255, 255)


def _save(path: Path, rgb: np.ndarray, mode: str = 'RGB', **kwargs) -> Path:
  image = Image.fromarray(np.asarray(rgb, np.uint8))
  if mode == 'P':
    image = image.quantize(colors=8, dither=Image.Dither.NONE)
  elif mode != image.mode:
    image = image.convert(mode)
  image.save(path, **kwargs)
  return path


def _sky(h: int = 24, w: int = 32, sky_rows: int = 8) -> np.ndarray:
  """uint8[h, w, 3]: blue top rows, white below."""
  rgb = np.full((h, w, 3), 255, np.uint8)
  rgb[:sky_rows] = BLUE
  return rgb


def _check_masks(masks: np.ndarray) -> None:
  assert masks.dtype == np.float32
  assert masks.min() >= 0.0 and masks.max() <= 1.0
  np.testing.assert_allclose(masks.sum(axis=-1), 1.0, atol=1e-6)


# --- Reading ------------------------------------------------------------------


@pytest.mark.parametrize('mode', ['RGB', 'P'])
def test_two_colours_are_two_hard_regions(tmp_path, mode):
  label = regions.read_label_map(_save(tmp_path / 'a.png', _sky(), mode))
  assert label.names == ('white', 'blue')  # most frequent first
  assert label.colours == (WHITE, BLUE)
  _check_masks(label.masks)
  assert label.masks.shape == (24, 32, 2)
  np.testing.assert_array_equal(label.masks[:8, :, 1], 1.0)
  np.testing.assert_array_equal(label.masks[8:, :, 0], 1.0)
  np.testing.assert_allclose(label.shares, [2 / 3, 1 / 3], rtol=1e-6)


@pytest.mark.parametrize('mode', ['L', '1'])
def test_a_black_and_white_mask_is_two_regions(tmp_path, mode):
  rgb = np.zeros((20, 20, 3), np.uint8)
  rgb[:, :12] = 255
  label = regions.read_label_map(_save(tmp_path / 'm.png', rgb, mode))
  assert label.names == ('white', 'black')
  np.testing.assert_allclose(label.shares, [0.6, 0.4])


def test_transparency_gives_opaque_and_transparent(tmp_path):
  rgba = np.zeros((20, 20, 4), np.uint8)
  rgba[..., :3] = np.random.default_rng(0).integers(0, 256, (20, 20, 3))
  rgba[:, :5, 3] = 255
  rgba[:, 5, 3] = 64  # A soft edge: a quarter opaque.
  path = tmp_path / 'alpha.png'
  Image.fromarray(rgba, 'RGBA').save(path)
  label = regions.read_label_map(path)
  assert label.names == ('opaque', 'transparent')
  assert label.colours == (None, None)
  _check_masks(label.masks)
  np.testing.assert_allclose(label.masks[0, :7, 0],
                             [1, 1, 1, 1, 1, 64 / 255, 0], atol=1e-6)


def test_a_palette_transparency_index_counts_as_alpha(tmp_path):
  image = Image.fromarray(_sky()).quantize(colors=2, dither=Image.Dither.NONE)
  sky_index = image.getpixel((0, 0))
  path = tmp_path / 'p.png'
  image.save(path, transparency=sky_index)
  label = regions.read_label_map(path)
  assert label.names == ('opaque', 'transparent')
  np.testing.assert_allclose(label.shares, [2 / 3, 1 / 3])


def test_an_opaque_alpha_channel_is_read_as_colours(tmp_path):
  rgba = np.concatenate([_sky(), np.full((24, 32, 1), 255, np.uint8)], -1)
  path = tmp_path / 'opaque.png'
  Image.fromarray(rgba, 'RGBA').save(path)
  assert regions.read_label_map(path).names == ('white', 'blue')


def test_intermediate_colours_are_shared_by_projection(tmp_path):
  rgb = _sky(24, 32, 12)
  rgb[12] = (64, 64, 255)  # An anti-aliased row: a quarter of the way to white.
  rgb[13] = (200, 190, 240)  # Off the segment: projected onto it.
  label = regions.read_label_map(_save(tmp_path / 'aa.png', rgb))
  assert label.names == ('blue', 'white')
  _check_masks(label.masks)
  np.testing.assert_allclose(label.masks[12, 0], [1 - 64 / 255, 64 / 255],
                             rtol=1e-5)
  t = (200 * 255 + 190 * 255) / (2 * 255 ** 2)
  np.testing.assert_allclose(label.masks[13, 0], [1 - t, t], rtol=1e-5)


def test_an_anti_aliased_small_map_has_no_edge_regions(tmp_path):
  # Lanczos down-sampling of a 16x larger hard map: a long soft border whose
  # colours hold a few % of the pixels, but only in a band without a core.
  big = np.asarray(Image.open(REPO / 'configs/regions/tubingen_sky.png')
                   .convert('RGB'))
  small = Image.fromarray(big).resize((48, 36), Image.Resampling.LANCZOS)
  path = tmp_path / 'small.png'
  small.save(path)
  label = regions.read_label_map(path)
  assert label.names == ('white', 'blue')
  _check_masks(label.masks)
  assert ((label.masks > 0.01) & (label.masks < 0.99)).any(-1).mean() > 0.05


def test_a_jpeg_saved_map_keeps_two_regions_and_matches_blue(tmp_path):
  big = Image.open(REPO / 'configs/regions/tubingen_sky.png').convert('RGB')
  path = tmp_path / 'map.jpg'
  big.save(path, quality=50)
  label = regions.read_label_map(path)
  assert len(label.names) == 2 and label.names[0] == 'white'
  index, note = regions.find_region(label, 'blue')
  assert index == 1
  np.testing.assert_allclose(label.shares, [0.675, 0.325], atol=0.003)
  # JPEG usually moves it, e.g. to '#0000fd'.
  assert note == ('' if label.names[1] == 'blue' else
                  f'blue matched {label.names[1]}')


def test_find_region_takes_the_nearest_colour_within_the_tolerance(tmp_path):
  rgb = _sky()
  rgb[:8] = (0, 0, 220)
  label = regions.read_label_map(_save(tmp_path / 'dark.png', rgb))
  assert label.names == ('white', '#0000dc')
  assert regions.find_region(label, 'blue') == (1, 'blue matched #0000dc')
  assert regions.find_region(label, '#0000DC') == (1, '')
  assert regions.find_region(label, 'rgb(250,250,250)') == (
      0, 'rgb(250,250,250) matched white')
  index, why = regions.find_region(label, 'navy')  # (0, 0, 128): 92 away
  assert index is None and "no region of colour 'navy'" in why


def test_a_colour_under_half_a_percent_is_not_a_region(tmp_path):
  rgb = _sky(40, 40, 20)
  rgb[30:33, 30:33] = (255, 0, 0)  # 9 px: 0.56% of pixels, but no 5x5 core.
  label = regions.read_label_map(_save(tmp_path / 'dot.png', rgb))
  assert label.names == ('blue', 'white')
  _check_masks(label.masks)


def test_a_photo_is_refused(tmp_path):
  photo = image_lib.load_image(image_lib.resolve_image('tubingen'), 64)
  path = _save(tmp_path / 'photo.png', np.round(photo * 255))
  with pytest.raises(UserError, match=r'is not a label image: its \d main '
                     r'colours cover \d+% of it .* paint each region'):
    regions.read_label_map(path)
  noise = np.random.default_rng(0).integers(0, 256, (40, 40, 3))
  with pytest.raises(UserError, match=r'\(40x40 px\) has no region: no colour '
                     'fills 0.5% of it'):
    regions.read_label_map(_save(tmp_path / 'noise.png', noise))


def test_a_missing_file_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match='image file not found'):
    regions.read_label_map(tmp_path / 'nope.png')


def test_colour_names_follow_pillow():
  assert regions.colour_name((0, 0, 255)) == 'blue'
  assert regions.colour_name((0, 255, 255)) == 'aqua'  # not 'cyan': A-Z
  assert regions.colour_name((128, 128, 128)) == 'gray'
  assert regions.colour_name((1, 2, 3)) == '#010203'


# --- Sizes --------------------------------------------------------------------


def test_resize_keeps_the_masks_shares_and_sums(tmp_path):
  label = regions.read_label_map(_save(tmp_path / 'a.png', _sky(48, 64, 16)))
  small = regions.resize_masks(label.masks, (12, 16))
  _check_masks(small)
  assert small.shape == (12, 16, 2)
  np.testing.assert_allclose(small.mean(axis=(0, 1)), [2 / 3, 1 / 3],
                             atol=1e-6)
  big = regions.resize_masks(label.masks, (96, 128))
  _check_masks(big)
  np.testing.assert_allclose(big[:30, :, 1], 1.0)
  np.testing.assert_array_equal(regions.resize_masks(label.masks, (48, 64)),
                                label.masks)


def test_feather_makes_a_ramp_of_about_twice_the_radius():
  masks = np.zeros((40, 40, 2), np.float32)
  masks[:, :20, 0] = 1
  masks[:, 20:, 1] = 1
  soft = regions.feather_masks(masks, 4.0)
  _check_masks(soft)
  row = soft[20, :, 0]
  assert np.all(np.diff(row) <= 1e-7)  # monotone
  assert 0.4 < row[19] < 0.7 and 0.3 < row[20] < 0.6
  assert row[15] > 0.97 and row[24] < 0.03  # +-2 sigma = +-radius
  assert row[12] > 0.999 and row[27] < 0.001
  np.testing.assert_array_equal(regions.feather_masks(masks, 0), masks)


def test_masks_at_resizes_then_feathers(tmp_path):
  label = regions.read_label_map(_save(tmp_path / 'a.png', _sky(48, 64, 16)))
  hard = regions.masks_at(label, (24, 32))
  np.testing.assert_array_equal(hard[:8, :, 1], 1.0)
  np.testing.assert_array_equal(hard[8:, :, 0], 1.0)
  soft = regions.masks_at(label, (24, 32), feather=4.0)
  _check_masks(soft)
  np.testing.assert_allclose(soft, regions.feather_masks(hard, 4.0))
  assert 0.3 < soft[8, 0, 1] < 0.6


def test_layer_masks_have_each_layers_feature_size():
  rng = np.random.default_rng(0)
  raw = rng.uniform(size=(37, 45, 3)).astype(np.float32)
  masks = raw / raw.sum(-1, keepdims=True)
  by_layer = losses.layer_masks(masks, vgg.CONV_LAYERS)
  for layer in vgg.CONV_LAYERS:
    assert by_layer[layer].shape == (*losses.feature_hw((37, 45), layer), 3)
    np.testing.assert_allclose(np.sum(by_layer[layer], -1), 1.0, atol=1e-5)
  # block2: the mean of each 2x2 block; the odd last row and column dropped.
  expected = masks[:36, :44].reshape(18, 2, 22, 2, 3).mean(axis=(1, 3))
  np.testing.assert_allclose(by_layer['block2_conv1'], expected, rtol=1e-6)
  np.testing.assert_array_equal(by_layer['block1_conv2'], masks)


def test_check_aspect():
  problems = []
  assert regions.check_aspect('content_regions', (192, 256), 'content',
                              (768, 1024), problems)
  assert regions.check_aspect('content_regions', (192, 258), 'content',
                              (768, 1024), problems)  # 0.8%
  assert not problems
  assert not regions.check_aspect('content_regions', (192, 256), 'content',
                                  (768, 1000), problems)
  assert problems == [
      'config.content_regions is 256x192 px (width/height 1.333) but '
      'config.content is 1000x768 (1.302), 2.4% apart (over 1%): draw the '
      'label image over the content image, or crop it to a 1000x768 shape']
  # A style's label image: the message names which of the styles it is.
  problems = []
  assert not regions.check_aspect('style_regions', (192, 243), 'style',
                                  (1200, 942), problems, name='the_scream')
  assert problems == [
      "config.style_regions ('the_scream') is 243x192 px (width/height 1.266) "
      "but config.style ('the_scream') is 942x1200 (0.785), 61.2% apart (over "
      '1%): draw the label image over the style image, or crop it to a '
      '942x1200 shape']


def test_check_nonempty_at_the_deepest_layer(tmp_path):
  rgb = _sky(64, 64, 48)
  rgb[:, :6] = (255, 0, 0)  # 6 px wide: at 32 px, 3/16 of block5's column.
  label = regions.read_label_map(_save(tmp_path / 'three.png', rgb))
  assert label.names == ('blue', 'white', 'red')
  layers = ('block1_conv1', 'block5_conv1')
  problems = []
  assert regions.check_nonempty('content_regions', label, label.masks,
                                (0, 1, 2), layers, 64, problems)
  masks = regions.resize_masks(label.masks, (32, 32))  # block5: 2x2
  assert not regions.check_nonempty('content_regions', label, masks,
                                    (0, 1, 2), layers, 32, problems)
  assert problems == [
      "config.content_regions: region 'red' covers 0.38 of the 4 "
      'positions of block5_conv1 (2x2) at 32 px, under 0.5: paint it '
      'larger, raise image_size, or drop the deepest style layer']


# --- The mapping --------------------------------------------------------------

STYLES = ('starry_night', 'paintings/shipwreck_minotaur.jpg')


@pytest.fixture(scope='module')
def maps(tmp_path_factory):
  folder = tmp_path_factory.mktemp('maps')
  content = regions.read_label_map(_save(folder / 'c.png', _sky()))
  style = regions.read_label_map(_save(folder / 's.png', _sky(24, 32, 16)))
  return content, {0: style}


def test_a_mapping_gives_one_entry_per_region(maps):
  content, style_maps = maps
  problems, notes = [], []
  mapping = regions.parse_region_styles(
      'BLUE=starry_night@blue , #fefefe=shipwreck_minotaur', content, STYLES,
      style_maps, problems, notes)
  assert not problems
  assert mapping == (regions.RegionStyle(0, 1, None),
                     regions.RegionStyle(1, 0, 0))
  assert notes == ['#fefefe matched white']
  mapping = regions.parse_region_styles(
      'blue=paintings/shipwreck_minotaur.jpg, white=None', content, STYLES,
      style_maps, problems)
  assert mapping == (regions.RegionStyle(0, None, None),
                     regions.RegionStyle(1, 1, None))
  assert regions.describe(content, content.shares, mapping, STYLES,
                          style_maps) == (
      'regions: white 67% -> none (keeps the photo), '
      'blue 33% -> shipwreck_minotaur')
  mapping = regions.parse_region_styles(
      'white=none, blue=starry_night@white', content, STYLES, style_maps,
      problems)
  assert regions.describe(content, [0.6, 0.4], mapping, STYLES,
                          style_maps).endswith(
      "blue 40% -> starry_night's white")


@pytest.mark.parametrize('text, message', [
    ('blue=starry_night',
     "config.region_styles='blue=starry_night' does not map region 'white' "
     '(67% of config.content_regions): add white=STYLE, or white=none to keep '
     'the photo there'),
    ('blue=van_gogh, white=none',
     "config.region_styles='blue=van_gogh, white=none': 'van_gogh' is not one "
     'of config.style (starry_night, paintings/shipwreck_minotaur.jpg): map '
     "'blue' to one of those, to 'none' (keeps the photo), or add 'van_gogh' "
     'to config.style'),
    ('blue=starry_night@red, white=none',
     "config.region_styles='blue=starry_night@red, white=none': s.png has no "
     "region of colour 'red' (255, 0, 0): its regions are blue, white "
     "(config.style_regions, 'starry_night')"),
    ('blue=shipwreck_minotaur@blue, white=none',
     "config.region_styles='blue=shipwreck_minotaur@blue, white=none': "
     "'shipwreck_minotaur'@'blue' names a region but 'shipwreck_minotaur' has "
     "no label image: add 'shipwreck_minotaur=PATH' to config.style_regions, "
     "or write 'blue=shipwreck_minotaur' to use the whole painting"),
    ('red=starry_night, blue=none, white=none',
     "config.region_styles='red=starry_night, blue=none, white=none': c.png "
     "has no region of colour 'red' (255, 0, 0): its regions are white, blue "
     '(config.content_regions)'),
    ('bleu=none, blue=none, white=none',
     "config.region_styles='bleu=none, blue=none, white=none': 'bleu' is not "
     "a colour: use a name or hex code Pillow knows ('blue', '#0000ff'); "
     "c.png's regions are white, blue (config.content_regions)"),
    ('opaque=none, blue=none, white=none',
     "config.region_styles='opaque=none, blue=none, white=none': c.png has no "
     'transparency: its regions are white, blue (config.content_regions)'),
    ('blue=none, #0000fe=none, white=none',
     "config.region_styles='blue=none, #0000fe=none, white=none' maps region "
     "'blue' twice: map each region once"),
    ('blue starry_night, white=none',
     "config.region_styles='blue starry_night, white=none': 'blue "
     "starry_night' is not COLOUR=STYLE; write e.g. 'blue=starry_night, "
     "white=none'"),
])
def test_bad_mappings_are_one_line_each(maps, text, message):
  content, style_maps = maps
  problems = []
  assert regions.parse_region_styles(text, content, STYLES, style_maps,
                                     problems) is None
  assert problems == [message]


def test_an_ambiguous_stem_names_no_style(maps):
  content, style_maps = maps
  problems = []
  regions.parse_region_styles('blue=a, white=none', content, ('x/a.jpg',
                                                              'y/a.png'),
                              {}, problems)
  assert len(problems) == 1 and "'a' is not one of config.style" in problems[0]


def test_style_regions_parse_and_refuse():
  problems = []
  assert regions.parse_style_regions(
      'starry_night=a.png, shipwreck_minotaur = b.png', STYLES,
      problems) == {0: 'a.png', 1: 'b.png'}
  assert not problems
  regions.parse_style_regions('monet=a.png, starry_night', STYLES, problems)
  assert problems == [
      "config.style_regions='monet=a.png, starry_night': 'monet' is not one of "
      'config.style (starry_night, paintings/shipwreck_minotaur.jpg): name one '
      'of those',
      "config.style_regions='monet=a.png, starry_night': 'starry_night' is not "
      "STYLE=PATH; write e.g. "
      "'starry_night=configs/regions/starry_night_sky.png'"]


# --- The example's label images -----------------------------------------------


@pytest.mark.parametrize('file, image, shares', [
    ('tubingen_sky.png', 'tubingen', {'blue': 0.325, 'white': 0.675}),
    ('starry_night_sky.png', 'starry_night', {'blue': 0.558, 'white': 0.442}),
])
def test_the_examples_label_images(file, image, shares):
  path = REPO / 'configs' / 'regions' / file
  assert path.stat().st_size < 4096
  label = regions.read_label_map(path)
  assert dict(zip(label.names, np.round(label.shares, 3))) == shares
  _check_masks(label.masks)
  problems = []
  assert regions.check_aspect(
      'content_regions', label.hw, 'content',
      image_lib.read_image_size(image_lib.resolve_image(image)), problems)
  assert not problems
