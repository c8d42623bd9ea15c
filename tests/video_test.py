"""Tests for scripts/video.py's pieces: config.video's checks and the driver.

Everything here needs the video extra (PyAV and OpenCV) and skips without
it. The runs are tiny (48x36 px, 4 frames, a few iterations, the real VGG19
weights) and check what a video artist relies on: the outputs (frames,
video at the input's rate, strip), both modes, and that a clip stopped by
Ctrl-C or killed mid-pass continues to the same pixels.
"""

import importlib.util
import os
import re
import signal
import sys
import time

import numpy as np
import pytest
from PIL import Image

from configs import video as video_config
from nst_jax import color
from nst_jax import flow as flow_lib
from nst_jax import testclips
from nst_jax import vgg
from nst_jax import video
from nst_jax import video_io
from nst_jax import video_spec
from nst_jax import workdir as workdir_lib
from nst_jax.errors import UserError
from nst_jax.signals import Interrupted

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec('av') is None
    or importlib.util.find_spec('cv2') is None,
    reason="the video extra is not installed (pip install -e '.[video]')")


@pytest.fixture(scope='module')
def clip_folder(tmp_path_factory):
  return testclips.write_test_clip(
      str(tmp_path_factory.mktemp('clip') / 'frames'), size=48, frames=4)


def _config(clip_folder, **video_fields):
  config = video_config.get_config('quick')
  config.video.input = clip_folder
  config.max_iterations, config.snapshot_every = 4, 2
  # Two blocks of VGG19: how frames are ordered, started and pulled does not
  # depend on the depth, and the programs compile in about half the time.
  config.content_layers = 'block2_conv2'
  config.style_layers = 'block1_conv1,block2_conv1'
  config.video.passes, config.video.later_iterations = 2, 2
  config.video.update(video_fields)
  return config


# --- config.video: one line per problem.


def _problems(config) -> list[str]:
  with pytest.raises(UserError) as e:
    video_spec.parse_video(config)
  return str(e.value).splitlines()


def test_parse_video_reads_the_selection(clip_folder):
  vspec = video_spec.parse_video(_config(clip_folder, start=1, every=2))
  assert list(vspec.indices) == [1, 3]
  assert vspec.gaps == (1, 2) and vspec.info.frame_count == 4


@pytest.mark.parametrize('fields, message', [
    ({'mode': 'parallel'}, r"config.video.mode='parallel': choose one of"),
    ({'gaps': '2,1'}, r"config.video.gaps='2,1': give distinct"),
    ({'temporal_from_pass': 1}, r'temporal_from_pass=1 must be >= 2'),
    ({'output': 'out.avi'}, r'the .avi format is not supported'),
    ({'start': 4}, r'config.video.start=4 is past the end of the clip'),
    ({'frames': 3, 'start': 2}, r'needs frame 4, but the clip has frames 0 '
     r'to 3'),
])
def test_a_bad_video_field_is_one_line(clip_folder, fields, message):
  (line,) = _problems(_config(clip_folder, **fields))
  assert __import__('re').search(message, line), line


def test_bad_inputs_are_one_line_each(clip_folder, tmp_path):
  broken = tmp_path / 'broken.mp4'
  broken.write_bytes(b'not a video at all')
  (line,) = _problems(_config(clip_folder, input=str(broken)))
  assert 'is not a video ffmpeg can read' in line
  empty = tmp_path / 'empty'
  empty.mkdir()
  (line,) = _problems(_config(clip_folder, input=str(empty)))
  assert 'holds no frames' in line
  mixed = tmp_path / 'mixed'
  mixed.mkdir()
  Image.new('RGB', (48, 36)).save(mixed / 'a1.png')
  Image.new('RGB', (40, 36)).save(mixed / 'a2.png')
  (line,) = _problems(_config(clip_folder, input=str(mixed)))
  assert 'must have one size' in line
  (line,) = _problems(_config(clip_folder, input=str(tmp_path / 'none.mp4')))
  assert 'video input not found' in line
  config = _config(clip_folder, colour=1)
  config.sweep.style_weight = '1,2'
  assert len(_problems(config)) == 2  # an unknown field and a sweep


def test_the_frame_config_is_checked_with_the_video_fields(clip_folder,
                                                          tmp_path):
  # spec.parse's problems come with config.video's, all at once, before the
  # frames or their flow are written (they came after the flow, and the
  # refused clip left video.json, input/ and flow/ behind).
  config = _config(clip_folder, passes=0, frames=9)
  config.style = 'no_such_painting'
  config.style_layers = 'block9_conv1'
  with pytest.raises(UserError) as e:
    video.run(config, tmp_path / 'v', log=lambda _: None)
  lines = str(e.value).splitlines()
  assert len(lines) == 4, lines
  for line, start in zip(lines, (
      'config.video.passes=0 must be >= 1',
      'config.video.frames=9 from start=0 every=1 needs frame 8',
      'config.style_layers has unknown layer(s) block9_conv1',
      "config.style: 'no_such_painting' is neither")):
    assert line.startswith(start), line
  assert not (tmp_path / 'v').exists()


def test_frames_too_small_for_the_flow_are_refused(clip_folder):
  # Layers that accept tiny pictures: only the flow limits the size.
  config = _config(clip_folder)
  config.content_layers = config.style_layers = 'block1_conv1'
  config.image_size = 10
  assert _problems(config) == [
      'config.image_size=10 makes the frames 10x8 px, too small for the '
      'optical flow (needs >= 8 px on the short side and >= 12 on the long '
      'one): raise image_size']
  config.image_size = 12
  video_spec.parse_video(config)  # 12x9 px
  # The limits are OpenCV's: the smallest frames it takes, and no smaller.
  short, long = video_spec.MIN_FLOW_SHORT_SIDE, video_spec.MIN_FLOW_LONG_SIDE
  for hw, works in (((short, long), True), ((long, short), True),
                    ((short - 1, long), False), ((short, long - 1), False),
                    ((long - 1, long - 1), False)):
    frame = np.random.default_rng(0).random(hw + (3,), np.float32)
    try:
      flow_lib.optical_flow(frame, frame, preset='fine')
      worked = True
    except Exception:  # pylint: disable=broad-except  # cv2.error
      worked = False
    assert worked == works, hw


@pytest.mark.parametrize('module', ['av', 'cv2'])
def test_a_missing_library_names_the_extra(clip_folder, monkeypatch, module):
  monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
  (line,) = _problems(_config(clip_folder))
  assert "install the video extra: pip install -e '.[video]'" in line


def test_the_script_reports_each_problem_on_one_line(clip_folder, run_script,
                                                    user_error):
  done = run_script('video.py', '--config=configs/video.py',
                    f'--config.video.input={clip_folder}',
                    '--config.video.mode=both', '--config.video.output=x.avi',
                    check=False)
  user_error(done, "config.video.mode='both'", 'x.avi', lines=2)


# --- The driver.


def _pixels(result) -> list[bytes]:
  # The PNGs' text chunks name their workdir: compare the pixels.
  return [np.asarray(Image.open(p)).tobytes() for p in result['frames']]


@pytest.fixture(scope='module')
def multipass_clip(clip_folder, tmp_path_factory):
  """One multipass clip (4 frames, 2 passes, a video written): (run's
  result, its workdir, its log lines, the engine's member inputs per call,
  the run's wall seconds)."""
  workdir, lines = tmp_path_factory.mktemp('multipass') / 'v', []
  with pytest.MonkeyPatch.context() as monkeypatch:
    seen = _record_member_inputs(monkeypatch)
    start = time.perf_counter()
    result = video.run(_config(clip_folder, output='clip.webm'), workdir,
                       log=lines.append)
  return result, workdir, lines, seen, time.perf_counter() - start


@pytest.mark.slow
def test_multipass_writes_frames_video_strip_and_steadies_frames(
    multipass_clip):
  result, workdir, lines, _, seconds = multipass_clip
  assert len(result['frames']) == 4
  # Each unit's time line accounts for that unit (the first one from the
  # clip's start, or the process's), not for the process so far.
  unit_seconds = [float(re.search(r'\(of ([0-9.]+)s\)$', l).group(1))
                  for l in lines if '] time: ' in l]
  assert len(unit_seconds) >= 3 and sum(unit_seconds[1:]) <= seconds
  # A pass's log names its first and last frame, not every one.
  (content,) = {l.split('] ', 1)[1].split(' -> ')[0] for l in lines
                if l.startswith('[pass 1/') and '] content: ' in l}
  assert content.endswith('frame_00003.png (4 photos)'), content
  assert 'frame_00001' not in content
  assert lines[-1].startswith(f'video: 4 frames in {workdir / "frames"}, ')
  assert Image.open(result['frames'][0]).size == (48, 36)
  info = video_io.probe(result['video'])
  assert info.frame_count == 4 and info.fps == video_io.FOLDER_FPS
  assert Image.open(result['strip']).size[1] == 36
  # Pass 2 moved towards the warped neighbours: every frame changed.
  passes = [[np.asarray(Image.open(video_io.frame_path(
      workdir / 'passes' / f'pass_{p}', t)), np.float32)
             for t in range(4)] for p in (1, 2)]
  assert all(np.abs(a - b).mean() > 0.1 for a, b in zip(*passes))


@pytest.mark.slow
def test_sequential_starts_each_frame_from_the_last_one(clip_folder,
                                                       tmp_path):
  lines = []
  result = video.run(_config(clip_folder, mode='sequential', frames=3,
                             output=''), tmp_path / 's', log=lines.append)
  assert result['video'] is None and len(result['frames']) == 3
  assert any(line.startswith('[frame 3/3]') for line in lines)
  assert any('video: frame 2/3 done' in line and 'ETA' in line
             for line in lines)
  # Runs of later frames have one scale and later_iterations.
  rows = (tmp_path / 's' / 'runs' / 'frame_00002' / 'losses.jsonl'
          ).read_text().splitlines()
  assert '"iteration": 2' in rows[-1]


def _record_member_inputs(monkeypatch) -> list:
  """Makes video's engine.run record each call's member inputs (start,
  extra targets) at its first scale's size; returns the list they go to."""
  seen = []
  real_run = video.engine.run

  def spy(spec, log, member_inputs=None, **kwargs):
    seen.append(member_inputs(spec.members, spec.members[0].scale_hws[0]))
    return real_run(spec, log, member_inputs=member_inputs, **kwargs)
  monkeypatch.setattr(video.engine, 'run', spy)
  return seen


@pytest.mark.slow
def test_luminance_only_frames_are_pulled_towards_grey_neighbours(
    clip_folder, tmp_path, monkeypatch):
  # preserve_color='luminance' optimises grey luminance images: the starts
  # and temporal targets the engine gets are grey too, and the frames come
  # out recoloured with their own input's chroma.
  seen = _record_member_inputs(monkeypatch)
  config = _config(clip_folder, output='')
  config.preserve_color = 'luminance'
  result = video.run(config, tmp_path / 'v', log=lambda _: None)
  (start_1, _), *later = seen
  assert start_1 is None and len(later) == 2  # pass 2's halves
  # Pass 2: grey starts (RGB [0, 1]) and grey warped neighbours (Caffe:
  # equal channels once the per-channel means are added back).
  for start_2, extra in later:
    warped_2 = extra['temporal']['warped']
    assert np.abs(start_2 - start_2[..., :1]).max() < 1e-6
    assert np.ptp(np.asarray(vgg.deprocess(warped_2)), axis=-1).max() < 1e-5
  frames = [np.asarray(Image.open(p), np.float32) / 255 for p in result['frames']]
  inputs = result['inputs']
  chroma = lambda rgb: np.asarray(color.rgb_to_yiq(rgb))[..., 1:]
  for frame, source in zip(frames, inputs):
    assert np.abs(chroma(frame) - chroma(source)).mean() < 0.03
    assert np.abs(frame[..., 0] - frame[..., 2]).max() > 0.05  # not grey


@pytest.mark.slow
def test_a_later_pass_pulls_its_second_half_to_the_first_halfs_results(
    multipass_clip):
  # Pass 2 makes frames 0 and 2, then 1 and 3 (red-black): frame 1's
  # neighbour targets are frames 0 and 2 of pass 2, not of pass 1. (Four
  # frames: halves of one size share their compiled programs.)
  result, workdir, _, seen, _ = multipass_clip
  assert [len(extra['temporal']['warped']) for _, extra in seen] == [4, 2, 2]
  _, odd = seen[2]
  warped = np.asarray(vgg.deprocess(odd['temporal']['warped'][0]))
  flow = result['flow']

  def neighbour(p, s, into):  # frame s of pass p warped along flow `into`
    image = video.image_lib.load_image(video_io.frame_path(
        workdir / 'passes' / f'pass_{p}', s))
    return np.asarray(video.flow_lib.warp(image, into))
  # Into frame 1. Sides: t - j (backward flow), then t + j (forward); gaps 1, 2.
  for k, (s, flows) in enumerate([(0, flow.backward), (2, flow.forward)]):
    got = warped[2 * k]
    assert np.abs(got - neighbour(2, s, flows[0, 1])).max() < 1e-4
    assert np.abs(got - neighbour(1, s, flows[0, 1])).max() > 0.01
  # The first half's targets were pass 1's.
  first_warped = np.asarray(vgg.deprocess(seen[1][1]['temporal']['warped']))
  # Frame 0 (member 0): its t + 1 neighbour is frame 1 of pass 1.
  assert np.abs(first_warped[0, 2]
                - neighbour(1, 1, flow.forward[0, 0])).max() < 1e-4


def test_regions_keep_their_terms_beside_the_temporal_one(clip_folder):
  # A clip with a style per region: the frames' loss has the regions' terms
  # and the temporal term, at every scale (adding the temporal term dropped
  # the regions' terms, and a regions clip failed in the engine).
  config = _config(clip_folder)
  config.style = 'starry_night,the_scream'
  config.content_regions = 'configs/regions/tubingen_sky.png'
  config.region_styles = 'blue=starry_night, white=none'
  config.region_photo_weight = 10.0
  spec = video._with_temporal(video.spec_lib.parse(video_spec.frame_config(config),
                                                   workdir=False), 1e10, 2)
  for loss_spec in (spec.loss_spec, *spec.scale_loss_specs):
    assert [type(t).__name__ for t in loss_spec.extra_terms] == [
        'GuidedStyle', 'PhotoHold', 'Temporal']
  assert spec.members[0].loss_weights['temporal'] == 1e10


def test_a_workdir_continues_only_its_own_settings(clip_folder, tmp_path):
  config = _config(clip_folder)
  video._check_record(config, tmp_path)  # pylint: disable=protected-access
  video._check_record(config, tmp_path)  # pylint: disable=protected-access
  other = _config(clip_folder, passes=3)
  other.style_weight = 1.0
  with pytest.raises(UserError, match=r'^.* holds a video run with other '
                     r'settings \(style_weight, video\.passes\): continue it '
                     r'with the same config, or choose a new --workdir$'):
    video._check_record(other, tmp_path)  # pylint: disable=protected-access


def test_a_clip_in_use_is_refused_before_writing(clip_folder, tmp_path):
  with workdir_lib.claim(tmp_path / 'v', resume=True):
    with pytest.raises(UserError, match=r'^--workdir=.* is in use by another '
                       r'run \(pid '):
      video.run(_config(clip_folder), tmp_path / 'v', log=lambda _: None)
    assert not (tmp_path / 'v' / video.RECORD).exists()


class _Killed(Exception):
  """Stands for SIGKILL: the run stops at once, saving nothing more."""


@pytest.mark.slow
def test_a_stopped_or_killed_clip_continues_to_the_same_pixels(clip_folder,
                                                              tmp_path):
  # Two calls of two frames per pass, two chunks per call after pass 1.
  config = _config(clip_folder, chunk=2, output='', later_iterations=4)
  whole = video.run(config, tmp_path / 'whole', log=lambda _: None)

  def ctrl_c_in_pass_1s_last_chunk(line):  # the engine finishes that call
    if line.startswith('[pass 1/2') and 'members 2-3  iter     4/4' in line:
      os.kill(os.getpid(), signal.SIGINT)
  with pytest.raises(Interrupted, match=r'after pass 1/2.*--config.resume='):
    video.run(config, tmp_path / 'cut', log=ctrl_c_in_pass_1s_last_chunk)
  # Pass 1 is done and pass 2 was not begun.
  assert not (tmp_path / 'cut' / 'runs' / 'pass_1' / 'state.npz').exists()
  assert not (tmp_path / 'cut' / 'runs' / 'pass_2_even').exists()

  def ctrl_c_in_pass_2(line):  # in its first call's first chunk
    if line.startswith('[pass 2/2') and 'iter ' in line:
      os.kill(os.getpid(), signal.SIGINT)
  with pytest.raises(Interrupted, match=r'--config.resume=.*cut'):
    video.run(config, tmp_path / 'cut', log=ctrl_c_in_pass_2)

  def kill_in_pass_2(line):  # in its second half, once a chunk is saved
    if line.startswith('[pass 2/2, 2 odd') and 'iter     4/4' in line:
      raise _Killed()
  with pytest.raises(_Killed):
    video.run(config, tmp_path / 'cut', log=kill_in_pass_2)
  assert (tmp_path / 'cut' / 'runs' / 'pass_2_odd' / 'state.npz').is_file()
  config.resume = str(tmp_path / 'cut')
  resumed = video.run(config, None, log=lambda _: None)
  assert _pixels(resumed) == _pixels(whole)
