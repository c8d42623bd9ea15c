"""Tests for nst_jax.flow: warping, confidence, DIS flow and its cache.

The flow is checked on a pan_zoom_clip of the shared images (tubingen panned
and zoomed, a crop of chelsea sliding over it), 48x64 px, whose true flow and
occlusions are known. Tests that need OpenCV skip without the video extra.
"""

import importlib.util
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import flow
from nst_jax import image
from nst_jax import testclips
from nst_jax.errors import UserError

needs_cv2 = pytest.mark.skipif(
    importlib.util.find_spec('cv2') is None,
    reason="OpenCV is not installed (pip install -e '.[video]')")


@pytest.fixture(scope='module')
def clip() -> testclips.TestClip:
  try:
    photo = image.load_image(image.resolve_image('tubingen'), 128)
    cat = image.load_image(image.resolve_image('chelsea'), 128)
  except UserError as e:
    pytest.skip(f'shared test images unavailable: {e}')
  return testclips.pan_zoom_clip(photo, cat[8:72, 40:110], hw=(48, 64),
                                 frames=5, pan=(1.5, 0.5), zoom=1.02,
                                 sprite_velocity=(2.0, 1.0))


# --- warp ---------------------------------------------------------------------


def test_warp_by_integer_shifts_is_exact():
  rng = np.random.default_rng(0)
  picture = rng.random((6, 7, 3), dtype=np.float32)
  shift = np.broadcast_to(np.array([2.0, -1.0], np.float32), (6, 7, 2))
  out = np.asarray(flow.warp(picture, shift))
  # out[y, x] = picture[y - 1, x + 2] where that exists.
  np.testing.assert_array_equal(out[1:, :-2], picture[:-1, 2:])
  # Beyond the border the nearest border pixel is taken.
  np.testing.assert_array_equal(out[0, :-2], picture[0, 2:])
  np.testing.assert_array_equal(out[1:, -1], picture[:-1, -1])


def test_warp_interpolates_bilinearly():
  picture = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
  flow_field = np.zeros((3, 4, 2), np.float32)
  flow_field[1, 1] = (0.5, 0.25)  # Between (row 1, col 1) and (row 2, col 2).
  out = np.asarray(flow.warp(picture, flow_field))
  want = 0.75 * (0.5 * 5 + 0.5 * 6) + 0.25 * (0.5 * 9 + 0.5 * 10)
  assert out[1, 1, 0] == pytest.approx(want)
  np.testing.assert_array_equal(np.delete(out.ravel(), 5),
                                np.delete(picture.ravel(), 5))


def test_warp_jits_vmaps_and_differentiates():
  pictures = jnp.ones((2, 4, 5, 3))
  flows = jnp.full((2, 4, 5, 2), 0.5)
  out = jax.jit(jax.vmap(flow.warp))(pictures, flows)
  assert out.shape == (2, 4, 5, 3)
  grad = jax.grad(lambda p: jnp.sum(flow.warp(p, flows[0])))(pictures[0])
  # Every output pixel spreads a total weight of 1 over its sources.
  assert float(jnp.sum(grad)) == pytest.approx(4 * 5 * 3)


def test_warp_refuses_a_flow_of_another_size():
  with pytest.raises(ValueError, match=r'warp wants flow \[4, 5, 2\]'):
    flow.warp(jnp.ones((4, 5, 3)), jnp.ones((5, 4, 2)))


# --- confidence ---------------------------------------------------------------


def _constant(h, w, dx, dy):
  return np.broadcast_to(np.array([dx, dy], np.float32), (h, w, 2)).copy()


def test_confidence_of_consistent_motion_is_one_except_new_content():
  # Frame b is frame a moved 2 px right: b's 2 left columns are new.
  forward, backward = _constant(8, 10, 2, 0), _constant(8, 10, -2, 0)
  c = np.asarray(flow.confidence(forward, backward))
  np.testing.assert_array_equal(c[:, 2:], 1.0)
  np.testing.assert_array_equal(c[:, :2], 0.0)


def test_confidence_is_zero_where_forward_and_backward_disagree():
  forward, backward = _constant(8, 10, 0, 0), _constant(8, 10, 0, 0)
  forward[2:5, 3:6] = (1.5, 0.0)  # Moves forward, but not back: occluded.
  c = np.array(flow.confidence(forward, backward))
  np.testing.assert_array_equal(c[2:5, 3:6], 0.0)
  c[2:5, 3:6] = 1.0
  np.testing.assert_array_equal(c, 1.0)
  # Small disagreements (< 0.5 px^2 + 1% of the motion) pass.
  forward[2:5, 3:6] = (0.6, 0.0)
  np.testing.assert_array_equal(flow.confidence(forward, backward), 1.0)


def test_confidence_is_zero_at_motion_boundaries():
  forward, backward = _constant(8, 12, 0, 0), _constant(8, 12, 0, 0)
  backward[:, 6:] = (0.0, 0.2)  # A step in v^ between columns 5 and 6.
  forward[:, 6:] = (0.0, -0.2)
  c = np.asarray(flow.confidence(forward, backward))
  np.testing.assert_array_equal(c[1:-1, 5:7], 0.0)
  np.testing.assert_array_equal(c[1:-1, :5], 1.0)
  np.testing.assert_array_equal(c[1:-1, 7:], 1.0)


@needs_cv2
def test_confidence_finds_the_trail_the_sprite_uncovers(clip):
  x, y = clip._grid()  # pylint: disable=protected-access
  recalls, visible_zeroed = [], []
  for t in range(1, 5):
    backward = flow.optical_flow(clip.frames[t], clip.frames[t - 1])
    forward = flow.optical_flow(clip.frames[t - 1], clip.frames[t])
    c = np.asarray(flow.confidence(forward, backward))
    true_flow = clip.flow(t, t - 1)
    # Background of frame t that frame t - 1 hid under the sprite.
    trail = (~clip._in_sprite(t, x, y)  # pylint: disable=protected-access
             & clip._in_sprite(t - 1, x + true_flow[..., 0],  # pylint: disable=protected-access
                               y + true_flow[..., 1]))
    assert trail.sum() > 20
    recalls.append(np.mean(c[trail] == 0))
    visible_zeroed.append(np.mean(c[~clip.occluded(t, t - 1)] == 0))
  assert np.mean(recalls) > 0.75, recalls  # Measured 0.83 to 1.
  assert np.mean(visible_zeroed) < 0.25, visible_zeroed  # Measured ~0.13.


# --- optical_flow -------------------------------------------------------------


@needs_cv2
def test_flow_matches_the_true_flow_of_the_clip(clip):
  for t in range(1, 5):
    visible = ~clip.occluded(t, t - 1)
    truth = clip.flow(t, t - 1)
    estimate = flow.optical_flow(clip.frames[t], clip.frames[t - 1])
    assert estimate.shape == (48, 64, 2) and estimate.dtype == np.float32
    error = flow.end_point_error(estimate, truth, visible)
    # Measured 0.16 to 0.24 px; a flipped sign or swapped axes are ~3 px off.
    assert error < 0.5
    assert flow.end_point_error(-estimate, truth, visible) > 2
    assert flow.end_point_error(estimate[..., ::-1], truth, visible) > 1


@needs_cv2
def test_flow_is_deterministic_and_presets_differ(clip):
  a = flow.optical_flow(clip.frames[1], clip.frames[0])
  np.testing.assert_array_equal(
      a, flow.optical_flow(clip.frames[1], clip.frames[0]))
  fast = flow.optical_flow(clip.frames[1], clip.frames[0], preset='ultrafast')
  assert np.abs(a - fast).max() > 0.01


@needs_cv2
def test_optical_flow_refuses_bad_inputs(clip):
  with pytest.raises(UserError, match=r"unknown flow preset 'slow'; use one "
                     r'of ultrafast, fast, medium, fine'):
    flow.optical_flow(clip.frames[0], clip.frames[1], preset='slow')
  with pytest.raises(UserError, match=r'two frames of one size'):
    flow.optical_flow(clip.frames[0], clip.frames[1, :40])


def test_missing_opencv_names_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, 'cv2', None)  # import cv2 raises.
  frame = np.zeros((8, 8, 3), np.float32)
  with pytest.raises(UserError, match=r"needs OpenCV.*pip install -e '\.\["
                     r"video\]'"):
    flow.optical_flow(frame, frame)


@pytest.mark.parametrize('gaps', [(), (2, 1), (1, 1), (0, 1), (1.5,)])
def test_settings_refuse_bad_gaps(gaps):
  with pytest.raises(UserError, match=r'flow gaps must be distinct positive'):
    flow.check_settings(flow.FlowSettings(gaps=gaps))


# --- clip_flow and its cache --------------------------------------------------


@needs_cv2
def test_clip_flow_pairs_every_frame_with_its_neighbours(clip):
  frames = clip.frames[:4]
  result = flow.clip_flow(frames, flow.FlowSettings(gaps=(1, 2)))
  assert result.gaps == (1, 2)
  assert result.backward.shape == (2, 4, 48, 64, 2)
  assert result.forward_confidence.shape == (2, 4, 48, 64)
  np.testing.assert_array_equal(result.backward[1, 3],
                                flow.optical_flow(frames[3], frames[1]))
  np.testing.assert_array_equal(result.forward[1, 0],
                                flow.optical_flow(frames[0], frames[2]))
  np.testing.assert_array_equal(
      result.backward_confidence[1, 2],
      flow.confidence(result.forward[1, 0], result.backward[1, 2]))
  np.testing.assert_array_equal(
      result.forward_confidence[0, 1],
      flow.confidence(result.backward[0, 2], result.forward[0, 1]))
  # No neighbour: flow 0 and confidence 0 (frames 0-1 back, 2-3 ahead).
  for field in (result.backward[1, :2], result.backward_confidence[1, :2],
                result.forward[1, 2:], result.forward_confidence[1, 2:]):
    np.testing.assert_array_equal(field, 0.0)
  assert result.backward_confidence[0, 1:].mean() > 0.5


@needs_cv2
def test_cache_is_reused_and_recomputed_when_the_clip_changes(
    clip, tmp_path, monkeypatch):
  frames = clip.frames[:3]
  settings = flow.FlowSettings(gaps=(1,), preset='fast')
  path = tmp_path / 'work' / 'flow'
  first = flow.cached_clip_flow(frames, settings, path)
  calls = []
  real_clip_flow = flow.clip_flow
  monkeypatch.setattr(flow, 'clip_flow',
                      lambda *a: calls.append(a) or real_clip_flow(*a))
  again = flow.cached_clip_flow(frames, settings, path)
  assert not calls  # Read from the file.
  for a, b in zip(first[1:], again[1:]):
    np.testing.assert_array_equal(a, b)
  changed = frames.copy()
  changed[2, 0, 0] += 0.01
  flow.cached_clip_flow(changed, settings, path)
  assert len(calls) == 1
  flow.cached_clip_flow(changed, settings._replace(gaps=(1, 2)), path)
  assert len(calls) == 2
  (path / 'forward.npy').write_bytes(b'not an npy')  # the key still matches
  flow.cached_clip_flow(changed, settings, path)
  assert len(calls) == 3
  # A run killed while computing left a partial folder: removed, recomputed.
  (path / flow.KEY_FILE).unlink()
  (tmp_path / 'work' / 'flow.partial').mkdir()
  stored = flow.cached_clip_flow(changed, settings, path)
  assert len(calls) == 4
  assert [p.name for p in path.parent.iterdir()] == ['flow']
  # Read back memory-mapped, equal to a computation in memory.
  assert all(isinstance(a, np.memmap) for a in stored[1:])
  for a, b in zip(stored[1:], real_clip_flow(changed, settings)[1:]):
    np.testing.assert_array_equal(a, b)


@needs_cv2
def test_fresh_flow_is_returned_even_if_the_cache_reader_refuses_it(
    clip, tmp_path, monkeypatch):
  # The cache reader answers None for anything it cannot use ("recompute");
  # the flow just written must reach the caller all the same.
  monkeypatch.setattr(flow, '_read_cache', lambda *a: None)
  frames = clip.frames[:2]
  stored = flow.cached_clip_flow(frames, flow.FlowSettings(gaps=(1,),
                                                           preset='fast'),
                                 tmp_path / 'flow')
  assert isinstance(stored, flow.ClipFlow)
  assert all(isinstance(a, np.memmap) for a in stored[1:])
