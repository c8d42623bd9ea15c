"""Tests for nst_jax.testclips: the rendered frames follow the true flow."""

import numpy as np
import pytest
from PIL import Image

from nst_jax import flow
from nst_jax import testclips


def _texture(hw: tuple[int, int], seed: int) -> np.ndarray:
  """Smooth random colours (blobs of 1/6 of the size), nearly linear within
  a pixel, so that resampling a frame is almost rendering it."""
  coarse = np.random.default_rng(seed).integers(0, 256, (6, 6, 3),
                                                dtype=np.uint8)
  smooth = Image.fromarray(coarse).resize(hw[::-1], Image.Resampling.BICUBIC)
  return np.asarray(smooth, np.float32) / 255


def _near_sprite(clip: testclips.TestClip, t: int, px: int) -> np.ndarray:
  """bool[H, W]: within `px` pixels of the sprite's edge in frame t."""
  x, y = clip._grid()  # pylint: disable=protected-access
  near = np.zeros(clip.hw, bool)
  for dx in range(-px, px + 1):
    for dy in range(-px, px + 1):
      near |= clip._in_sprite(t, x + dx, y + dy)  # pylint: disable=protected-access
  inner = np.ones(clip.hw, bool)
  for dx in (-px, px):
    for dy in (-px, px):
      inner &= clip._in_sprite(t, x + dx, y + dy)  # pylint: disable=protected-access
  return near & ~inner


def _clip(**kwargs) -> testclips.TestClip:
  return testclips.pan_zoom_clip(_texture((200, 240), 0), _texture((40, 40), 1),
                                 **kwargs)


def test_pan_without_zoom_moves_the_background_by_the_pan():
  clip = _clip(pan=(2.0, -1.0), zoom=1.0, sprite_velocity=(1.0, 0.5))
  flow_10 = clip.flow(1, 0)
  background = ~clip._in_sprite(1, *clip._grid())  # pylint: disable=protected-access
  np.testing.assert_allclose(flow_10[background] - [2.0, -1.0], 0, atol=1e-5)
  np.testing.assert_allclose(flow_10[~background] - [-1.0, -0.5], 0,
                             atol=1e-6)
  # The camera moves right and up: frame 1's two right columns and its top
  # row show what frame 0 did not.
  occluded = clip.occluded(1, 0)
  assert occluded[:, -2:].all() and occluded[0].all()
  away_from_sprite = background.copy()
  away_from_sprite[:, 8:48] = False
  assert not occluded[1:, :-2][away_from_sprite[1:, :-2]].any()

@pytest.mark.parametrize('a, b', [(2, 1), (1, 3), (4, 0)])
def test_frames_match_warped_along_the_true_flow(a, b):
  clip = _clip(frames=5)
  warped = np.asarray(flow.warp(clip.frames[b], clip.flow(a, b)))
  # Bilinear samples across the sprite's edge mix sprite and background.
  visible = ~clip.occluded(a, b) & ~_near_sprite(clip, a, 1)
  assert visible.mean() > 0.6
  assert np.abs(warped - clip.frames[a])[visible].mean() < 0.01
  # The occluded pixels really differ (the mask is not just everything).
  assert np.abs(warped - clip.frames[a])[~visible].mean() > 0.03


def test_flows_there_and_back_cancel_where_visible():
  clip = _clip(frames=4)
  there, back = clip.flow(3, 1), clip.flow(1, 3)
  back_at_target = np.asarray(flow.warp(back, there))
  # Where the bilinear sample of `back` mixes sprite and background, the
  # sum is meaningless: keep pixels whose four neighbours agree.
  x, y = clip._grid()  # pylint: disable=protected-access
  sprite_1 = clip._in_sprite(1, x, y).astype(np.float32)[..., None]  # pylint: disable=protected-access
  mixed = np.asarray(flow.warp(sprite_1, there))[..., 0] % 1 != 0
  visible = ~clip.occluded(3, 1) & ~_near_sprite(clip, 3, 1) & ~mixed
  np.testing.assert_allclose((there + back_at_target)[visible], 0, atol=0.05)


def test_trail_behind_the_sprite_is_occluded():
  clip = _clip(frames=2, sprite_velocity=(3.0, 0.0))
  occluded = clip.occluded(1, 0)
  left = int(np.ceil(clip.sprite_corner[0]))
  top = int(np.ceil(clip.sprite_corner[1]))
  rows = slice(top + 1, top + clip.sprite_hw[0] - 1)
  # The 3 columns the sprite uncovered were under it in frame 0.
  assert occluded[rows, left:left + 3].all()
  assert not occluded[rows, left + 4:left + clip.sprite_hw[1]].any()


def test_a_sprite_leaving_the_frame_is_refused():
  with pytest.raises(ValueError, match=r'sprite leaves the 64x48 frame at '
                     r'frame 5'):
    _clip(frames=6, sprite_velocity=(10.0, 0.0))
