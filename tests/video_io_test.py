"""Tests for nst_jax.video_io: reading and writing clips, and its errors.

The clips are made here with PyAV (tiny frames, a short sine as audio) or
Pillow (frame folders), in tmp_path; nothing is committed. Tests that need
PyAV skip when the video extra is not installed.
"""

import importlib.util
import logging
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst_jax import video_io
from nst_jax.errors import UserError

needs_av = pytest.mark.skipif(
    importlib.util.find_spec('av') is None,
    reason="PyAV is not installed (pip install -e '.[video]')")


def _frames(t_count: int = 6, hw: tuple[int, int] = (48, 64)) -> np.ndarray:
  """float32[T, H, W, 3]: smooth gradients with a bar moving right, so every
  frame differs and survives lossy codecs."""
  h, w = hw
  y, x = np.mgrid[0:h, 0:w].astype(np.float32)
  frames = np.zeros((t_count, h, w, 3), np.float32)
  for t in range(t_count):
    frames[t, ..., 0] = x / w
    frames[t, ..., 1] = y / h
    frames[t, ..., 2] = 0.2
    frames[t, :, (4 * t) % w:(4 * t) % w + 6] = 1.0
  return frames


def _sine_video(path: Path, frames: np.ndarray, fps: int, hz: float = 440.0,
                rate: int = 16000, audio_codec: str = 'aac',
                container_format: str | None = None) -> Path:
  """Writes `frames` (H.264) with `hz` sine audio lasting as long."""
  import av  # pylint: disable=g-import-not-at-top
  with av.open(str(path), 'w', format=container_format) as container:
    video = container.add_stream('libx264', rate=fps)
    video.height, video.width = frames.shape[1:3]
    video.pix_fmt = 'yuv420p'
    audio = container.add_stream(audio_codec, rate=rate)
    audio.layout = 'mono'
    for frame in frames:
      pixels = np.round(frame * 255).astype(np.uint8)
      container.mux(video.encode(av.VideoFrame.from_ndarray(pixels)))
    container.mux(video.encode(None))
    samples = rate * len(frames) // fps
    sine = 0.3 * np.sin(2 * np.pi * hz * np.arange(samples) / rate)
    chunk = 1024
    for start in range(0, samples, chunk):
      block = np.zeros(chunk, np.float32)
      block[:len(sine[start:start + chunk])] = sine[start:start + chunk]
      fmt = audio.codec_context.format.name
      data = (block if fmt in ('flt', 'fltp') else
              np.round(block * 32767).astype(np.int16))[None]
      audio_frame = av.AudioFrame.from_ndarray(data, format=fmt,
                                               layout='mono')
      audio_frame.sample_rate, audio_frame.pts = rate, start
      container.mux(audio.encode(audio_frame))
    container.mux(audio.encode(None))
  return path


def _audio_of(path: Path) -> tuple[str, np.ndarray, int]:
  """(codec name, mono samples float, sample rate) of the file's audio."""
  import av  # pylint: disable=g-import-not-at-top
  with av.open(str(path)) as container:
    stream = container.streams.audio[0]
    chunks = [f.to_ndarray().astype(np.float64).reshape(
        len(f.layout.channels), -1)[0] if f.format.is_planar else
              f.to_ndarray().astype(np.float64)[0, ::len(f.layout.channels)]
              for f in container.decode(stream)]
    return stream.codec_context.name, np.concatenate(chunks), stream.rate


def _dominant_hz(samples: np.ndarray, rate: int) -> float:
  spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
  return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


# --- Selecting frames ---------------------------------------------------------


def test_select_frames_picks_start_count_and_step():
  assert video_io.select_frames(10) == range(0, 10)
  assert video_io.select_frames(10, start=3) == range(3, 10)
  assert list(video_io.select_frames(10, start=1, frames=3, every=3)) == [
      1, 4, 7]
  assert list(video_io.select_frames(10, start=1, every=4)) == [1, 5, 9]


@pytest.mark.parametrize('kwargs, match', [
    ({'start': 6}, r'start=6 is past the end of the clip \(frames 0 to 5\)'),
    ({'start': 1, 'frames': 4, 'every': 2},
     r'frames=4 from start=1 every=2 needs frame 7.*use frames <= 3'),
    ({'frames': -1}, r'config.video.frames must be an integer >= 0'),
    ({'every': 0}, r'config.video.every must be an integer >= 1'),
    ({'start': 1.5}, r'config.video.start must be an integer'),
])
def test_select_frames_refuses_a_range_outside_the_clip(kwargs, match):
  with pytest.raises(UserError, match=match):
    video_io.select_frames(6, **kwargs)


# --- Folders of frames ----------------------------------------------------------


def _write_folder(folder: Path, names_and_sizes) -> list[int]:
  folder.mkdir()
  shades = []
  for i, (name, (w, h)) in enumerate(names_and_sizes):
    shade = 20 * i + 10
    Image.new('RGB', (w, h), (shade, 0, 0)).save(folder / name)
    shades.append(shade)
  return shades


def test_folder_frames_are_read_in_natural_order(tmp_path):
  folder = tmp_path / 'frames'
  names = ['frame_10.png', 'frame_2.png', 'frame_1.png', 'frame_3.jpg']
  shades = _write_folder(folder, [(n, (16, 12)) for n in names])
  (folder / 'notes.txt').write_text('not a frame')
  clip = video_io.read_clip(folder, every=1)
  by_name = dict(zip(names, shades))
  want = [by_name[n] for n in ('frame_1.png', 'frame_2.png', 'frame_3.jpg',
                               'frame_10.png')]
  np.testing.assert_allclose(clip.frames[:, 0, 0, 0] * 255, want, atol=3)
  assert clip.frames.shape == (4, 12, 16, 3)
  assert clip.fps == video_io.FOLDER_FPS and clip.audio is None
  assert clip.info.frame_count == 4


def test_folder_selection_resize_and_fps(tmp_path):
  folder = tmp_path / 'frames'
  _write_folder(folder, [(f'{i}.png', (40, 20)) for i in range(5)])
  clip = video_io.read_clip(folder, start=1, frames=2, every=2, long_side=20,
                            fps=12)
  assert clip.frames.shape == (2, 10, 20, 3)
  assert clip.indices == range(1, 5, 2)
  assert clip.fps == 6  # 12 / every.


def test_folder_with_frames_of_different_sizes_names_the_first_odd_one(
    tmp_path):
  folder = tmp_path / 'frames'
  _write_folder(folder, [('a_1.png', (16, 12)), ('a_2.png', (16, 12)),
                         ('a_3.png', (12, 16)), ('a_4.png', (10, 10))])
  with pytest.raises(UserError,
                     match=r'frame a_3.png is 12x16 but a_1.png is 16x12'):
    video_io.probe(folder)


def test_folder_without_frames_is_refused(tmp_path):
  (tmp_path / 'readme.txt').write_text('x')
  with pytest.raises(UserError, match=r'holds no frames'):
    video_io.read_clip(tmp_path)


def test_missing_input_is_refused(tmp_path):
  with pytest.raises(UserError, match=r'video input not found: .*nope.mp4'):
    video_io.probe(tmp_path / 'nope.mp4')


# --- Video files ----------------------------------------------------------------


@needs_av
@pytest.mark.parametrize('suffix, fps', [
    ('.mp4', Fraction(30000, 1001)), ('.webm', Fraction(24)),
    ('.mov', Fraction(25)), ('.gif', Fraction(25))])
def test_video_round_trip_keeps_frame_count_fps_and_size(tmp_path, suffix,
                                                         fps):
  frames = _frames(6)
  path = video_io.write_video(tmp_path / f'clip{suffix}', frames, fps)
  clip = video_io.read_clip(path)
  assert clip.frames.shape == frames.shape
  assert clip.fps == fps
  assert clip.audio is None
  # Lossy, but the same picture: the moving bar is where it was.
  assert np.mean(np.abs(clip.frames - frames)) < 0.03
  bar = np.flatnonzero(clip.frames[3, 24, :, 2] > 0.6)
  assert bar.mean() == pytest.approx(14.5, abs=1)  # Columns 12 to 17.


@needs_av
def test_odd_sizes_lose_at_most_a_row_and_a_column(tmp_path):
  frames = _frames(3, (47, 63))
  mp4 = video_io.write_video(tmp_path / 'odd.mp4', frames, 10)
  gif = video_io.write_video(tmp_path / 'odd.gif', frames, 10)
  assert video_io.probe(mp4).hw == (46, 62)  # yuv420p needs even sizes.
  assert video_io.probe(gif).hw == (47, 63)


@needs_av
def test_identical_frames_are_all_kept(tmp_path):
  frames = np.full((5, 16, 16, 3), 0.5, np.float32)
  for suffix in ('.mp4', '.gif'):
    path = video_io.write_video(tmp_path / f'still{suffix}', frames, 5)
    assert video_io.probe(path).frame_count == 5, suffix


@needs_av
def test_read_clip_selects_resizes_and_streams(tmp_path):
  frames = _frames(8)
  path = video_io.write_video(tmp_path / 'clip.mp4', frames, 8)
  clip = video_io.read_clip(path, start=1, frames=3, every=2, long_side=32)
  assert clip.frames.shape == (3, 24, 32, 3)
  assert clip.fps == 4 and clip.indices == range(1, 7, 2)
  full = video_io.read_clip(path)
  streamed = list(video_io.iter_frames(full.info, range(1, 7, 2)))
  np.testing.assert_array_equal(np.stack(streamed), full.frames[1:7:2])


@needs_av
def test_audio_is_copied_and_cut_to_the_selection(tmp_path):
  source = _sine_video(tmp_path / 'in.mp4', _frames(12), fps=12, hz=440)
  clip = video_io.read_clip(source, start=3, frames=6)
  assert clip.audio is not None
  assert (clip.audio.start_s, clip.audio.end_s) == pytest.approx((0.25, 0.75))
  out = video_io.write_video(tmp_path / 'out.mp4', clip.frames, clip.fps,
                             audio=clip.audio)
  codec, samples, rate = _audio_of(out)
  assert codec == 'aac'  # Copied, not re-encoded.
  assert video_io.probe(out).has_audio
  # Half a second, give or take the codec's 1024-sample packets.
  assert len(samples) / rate == pytest.approx(0.5, abs=1024 * 1.5 / rate)
  assert _dominant_hz(samples, rate) == pytest.approx(440, abs=10)


@needs_av
def test_audio_the_container_cannot_hold_is_reencoded(tmp_path):
  # PCM in Matroska; webm takes only Opus or Vorbis.
  source = _sine_video(tmp_path / 'in.mkv', _frames(6), fps=12, hz=660,
                       audio_codec='pcm_s16le')
  clip = video_io.read_clip(source)
  out = video_io.write_video(tmp_path / 'out.webm', clip.frames, clip.fps,
                             audio=clip.audio)
  codec, samples, rate = _audio_of(out)
  assert codec == 'opus'
  assert _dominant_hz(samples, rate) == pytest.approx(660, abs=10)


@needs_av
def test_gif_drops_audio_with_a_warning(tmp_path, caplog):
  source = _sine_video(tmp_path / 'in.mp4', _frames(4), fps=12)
  clip = video_io.read_clip(source)
  with caplog.at_level(logging.WARNING):
    out = video_io.write_video(tmp_path / 'out.gif', clip.frames, clip.fps,
                               audio=clip.audio)
  assert 'gif holds no audio' in caplog.text
  assert not video_io.probe(out).has_audio


@needs_av
def test_display_rotation_is_applied(tmp_path):
  import av  # pylint: disable=g-import-not-at-top
  pixels = np.zeros((16, 32, 3), np.uint8)
  pixels[:8, :8] = 255  # A white block at the top left.
  path = tmp_path / 'turned.mp4'
  with av.open(str(path), 'w') as container:
    stream = container.add_stream('libx264', rate=4)
    stream.width, stream.height, stream.pix_fmt = 32, 16, 'yuv420p'
    stream.set_display_rotation(90)  # Counter-clockwise.
    container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels)))
    container.mux(stream.encode(None))
  clip = video_io.read_clip(path)
  assert clip.info.hw == (32, 16)
  # Turned counter-clockwise, the top left goes to the bottom left.
  assert clip.frames[0, -4, 4].mean() > 0.8
  assert clip.frames[0, 4, 4].mean() < 0.2


@needs_av
def test_unreadable_video_is_refused_in_one_line(tmp_path):
  path = tmp_path / 'broken.mp4'
  path.write_bytes(b'this is not a video' * 10)
  with pytest.raises(UserError, match=r'broken.mp4 is not a video ffmpeg can '
                     r'read \([^\n]*\); pass an mp4'):
    video_io.read_clip(path)


@needs_av
def test_video_without_frames_is_refused(tmp_path):
  import av  # pylint: disable=g-import-not-at-top
  # A video track with not one frame, kept in the file by a little audio.
  empty = tmp_path / 'empty.mkv'
  with av.open(str(empty), 'w') as container:
    video = container.add_stream('libx264', rate=4)
    video.width, video.height, video.pix_fmt = 16, 16, 'yuv420p'
    audio = container.add_stream('pcm_s16le', rate=8000)
    audio.layout = 'mono'
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16),
                                       format='s16', layout='mono')
    frame.sample_rate, frame.pts = 8000, 0
    container.mux(audio.encode(frame))
    container.mux(audio.encode(None))
    container.mux(video.encode(None))
  with pytest.raises(UserError, match=r'empty.mkv has no frames; pass a '):
    video_io.read_clip(empty)
  audio_only = tmp_path / 'audio_only.mka'
  with av.open(str(empty)) as source, av.open(str(audio_only), 'w') as out:
    copy = out.add_stream_from_template(source.streams.audio[0])
    for packet in source.demux(source.streams.audio[0]):
      if packet.dts is not None:
        packet.stream = copy
        out.mux(packet)
  with pytest.raises(UserError, match=r'audio_only.mka has no video stream'):
    video_io.read_clip(audio_only)


@needs_av
def test_frame_range_outside_a_video_is_refused(tmp_path):
  path = video_io.write_video(tmp_path / 'clip.webm', _frames(4), 8)
  with pytest.raises(UserError, match=r'start=4 is past the end .*0 to 3'):
    video_io.read_clip(path, start=4)


@needs_av
@pytest.mark.parametrize('name', ['out.avi', 'out.png', 'out'])
def test_unwritable_format_is_refused_before_encoding(tmp_path, name):
  with pytest.raises(UserError, match=r'format is not supported; end the '
                     r'name in one of \.mp4'):
    video_io.write_video(tmp_path / name, _frames(2), 8)
  assert not (tmp_path / name).exists()


def test_missing_pyav_names_the_extra(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, 'av', None)  # import av raises.
  path = tmp_path / 'clip.mp4'
  path.write_bytes(b'x')
  with pytest.raises(UserError, match=r"need PyAV.*pip install -e '\.\["
                     r"video\]'"):
    video_io.probe(path)
  with pytest.raises(UserError, match=r"pip install -e '\.\[video\]'"):
    video_io.write_video(tmp_path / 'out.mp4', _frames(2), 8)


# --- Frames and strips ----------------------------------------------------------


def test_write_frames_numbers_pngs_from_first_index(tmp_path):
  frames = _frames(3, (8, 8))
  paths = video_io.write_frames(tmp_path / 'out', frames, first_index=5)
  assert [p.name for p in paths] == ['frame_00005.png', 'frame_00006.png',
                                     'frame_00007.png']
  back = np.asarray(Image.open(paths[1]), np.float32) / 255
  np.testing.assert_allclose(back, frames[1], atol=0.5 / 255 + 1e-6)
  assert video_io.read_clip(tmp_path / 'out').frames.shape == (3, 8, 8, 3)


def test_strip_spreads_frames_first_to_last():
  frames = np.stack([np.full((4, 5, 3), t / 9, np.float32) for t in range(10)])
  out = video_io.strip(frames, 4, gap_px=2)
  assert out.shape == (4, 4 * 5 + 3 * 2, 3)
  np.testing.assert_allclose(out[0, ::7, 0], [0, 3 / 9, 6 / 9, 1], atol=1e-6)
  np.testing.assert_array_equal(out[:, 5:7], 1.0)  # The white gaps.
  assert video_io.strip(frames[:2], 6).shape == (4, 5 + 4 + 5, 3)


def test_save_strip_writes_a_png(tmp_path):
  path = video_io.save_strip(tmp_path / 'strip.png', _frames(5, (8, 10)), 3)
  assert Image.open(path).size == (3 * 10 + 2 * 4, 8)
