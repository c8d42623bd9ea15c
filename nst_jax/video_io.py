"""Video files and frame folders in and out (PyAV, i.e. ffmpeg's libraries).

The only module that touches video files; the rest of nst_jax works on frames
float32[H, W, 3] in [0, 1], a clip being float32[T, H, W, 3].

In: `probe` reads what a clip holds (frames, display size, frame rate,
audio) without decoding it all; `read_clip` (or `iter_frames`, for clips too
long to hold) decodes the frames `select_frames` picks (`start`, `frames`,
`every`), Lanczos-resized like `image.load_image`. A clip is a video file
(mp4, mov, mkv, webm, gif, avi: whatever ffmpeg reads) or a folder of image
files taken in natural order (frame_2 before frame_10), all of one size.

Out: `write_frames` (one PNG per frame), `write_video` (mp4/mov/mkv with H.264,
webm with VP9, gif with a palette per frame; the audio of the selected time
span copied, or re-encoded where the container cannot hold it) and
`save_strip` (frames side by side, for a README). Every file is written
atomically (`files.atomic_write`).

PyAV is optional: `pip install -e '.[video]'` (its wheels carry ffmpeg).
"""

import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from nst_jax import files
from nst_jax import image as image_lib
from nst_jax.errors import UserError

log = logging.getLogger(__name__)

VIDEO_EXTRA = "pip install -e '.[video]'"

# Image files a frame folder may hold (any other file in it is ignored).
FRAME_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
# Frame rate of a folder of frames, which has none of its own.
FOLDER_FPS = Fraction(24)


class _Writer(NamedTuple):
  container: str  # ffmpeg's muxer name.
  codec: str  # Video encoder.
  pixel_format: str
  options: dict[str, str]
  audio_codec: str | None  # Encoder for audio the container cannot copy.


# yuv420p plays everywhere (browsers, QuickTime) but needs even sizes.
_H264 = ('libx264', 'yuv420p', {'crf': '18', 'preset': 'medium'})
WRITERS: dict[str, _Writer] = {
    '.mp4': _Writer('mp4', *_H264, 'aac'),
    '.m4v': _Writer('mp4', *_H264, 'aac'),
    '.mov': _Writer('mov', *_H264, 'aac'),
    '.mkv': _Writer('matroska', *_H264, 'aac'),
    '.webm': _Writer('webm', 'libvpx-vp9', 'yuv420p',
                     {'crf': '30', 'b': '0'}, 'libopus'),
    '.gif': _Writer('gif', 'gif', 'pal8', {}, None),
}


def _av() -> Any:
  """The av module, or a UserError naming the extra that installs it."""
  try:
    import av  # pylint: disable=g-import-not-at-top  # Optional dependency.
  except ImportError as e:
    raise UserError(f'video files need PyAV (with ffmpeg), which is not '
                    f'installed; install the video extra: {VIDEO_EXTRA}') from e
  return av


# --- Reading ------------------------------------------------------------------


class AudioSpan(NamedTuple):
  """The audio that goes with selected frames: a time span of a file."""
  source: Path
  start_s: float
  end_s: float


class ClipInfo(NamedTuple):
  """What a clip holds, from `probe`."""
  source: Path  # The video file or the frame folder.
  frame_count: int  # Frames in the whole clip.
  hw: tuple[int, int]  # (height, width) of a frame as displayed.
  fps: Fraction  # Frames per second (FOLDER_FPS for a folder).
  has_audio: bool
  # A folder's frame files in order; empty for a video file.
  frame_files: tuple[Path, ...] = ()
  # Counter-clockwise quarter turns that display a decoded frame upright.
  quarter_turns: int = 0


class Clip(NamedTuple):
  """Frames read by `read_clip`."""
  frames: np.ndarray  # float32[T, H, W, 3] in [0, 1].
  fps: Fraction  # Of the selection: the clip's fps / every.
  audio: AudioSpan | None  # The selection's audio, None when there is none.
  info: ClipInfo  # The whole clip.
  indices: range  # Each frame's index in the whole clip.


def _natural_key(path: Path) -> list[Any]:
  """Sort key putting 'frame_2' before 'frame_10' (digits compare as numbers)."""
  return [int(part) if part.isdigit() else part.lower()
          for part in re.split(r'(\d+)', path.name)]


def _probe_folder(folder: Path) -> ClipInfo:
  frame_files = sorted(
      (p for p in folder.iterdir()
       if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES),
      key=_natural_key)
  if not frame_files:
    raise UserError(f'{folder} holds no frames (no {", ".join(FRAME_SUFFIXES)}'
                    ' files); point config.video.input at a video file or a '
                    'folder of frames')
  hw = image_lib.read_image_size(frame_files[0])
  for path in frame_files[1:]:
    # Header reads only, so a bad folder fails before any decoding.
    size = image_lib.read_image_size(path)
    if size != hw:
      raise UserError(
          f'frame {path.name} is {size[1]}x{size[0]} but {frame_files[0].name}'
          f' is {hw[1]}x{hw[0]}; every frame of {folder} must have one size '
          '(resize or remove the odd ones)')
  return ClipInfo(folder, len(frame_files), hw, FOLDER_FPS, False,
                  tuple(frame_files))


def _unreadable(path: Path, error: Exception) -> UserError:
  return UserError(f'{path} is not a video ffmpeg can read ({error}); pass '
                   'an mp4, mov, mkv, webm or gif file, or a folder of frames')


def _probe_file(path: Path) -> ClipInfo:
  av = _av()
  try:
    with av.open(str(path)) as container:
      if not container.streams.video:
        raise UserError(f'{path} has no video stream; pass a video file or a '
                        'folder of frames')
      stream = container.streams.video[0]
      has_audio = bool(container.streams.audio)
      fps = stream.average_rate or stream.guessed_rate or FOLDER_FPS
      first = next(container.decode(stream), None)
      if first is None:
        raise UserError(f'{path} has no frames; pass a video with at least '
                        'one frame')
      count = stream.frames
      if count <= 0:  # webm, gif and others leave it unset: count packets.
        container.seek(0)
        count = sum(1 for packet in container.demux(stream) if packet.size)
      sar = stream.sample_aspect_ratio or Fraction(1)
      turns = round((first.rotation or 0) / 90) % 4
      height, width = first.height, max(1, round(first.width * sar))
  except av.error.FFmpegError as e:
    raise _unreadable(path, e) from e
  hw = (width, height) if turns % 2 else (height, width)
  return ClipInfo(path, count, hw, Fraction(fps), has_audio,
                  quarter_turns=turns)


def probe(source: str | os.PathLike[str]) -> ClipInfo:
  """What the clip at `source` (video file or frame folder) holds.

  Decodes at most one frame. A video's frame count comes from its header, or
  from counting packets where the header has none (webm, gif). A folder's
  frames are its image files in natural order, sizes checked on the headers.

  Raises:
    UserError: missing, not a video ffmpeg can read, no video stream or no
      frames, a folder without frames or with frames of different sizes, or
      PyAV missing.
  """
  path = Path(source).expanduser()
  if not path.exists():
    raise UserError(f'video input not found: {path}; check '
                    'config.video.input')
  return _probe_folder(path) if path.is_dir() else _probe_file(path)


def _check_count(name: str, value: Any, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise UserError(f'config.video.{name} must be an integer >= {minimum}, '
                    f'got {value!r}')
  return value


def select_frames(frame_count: int, start: int = 0, frames: int = 0,
                  every: int = 1) -> range:
  """The indices of the frames to use: start, start + every, ...

  Args:
    frame_count: frames in the clip.
    start: index of the first frame (0-based).
    frames: how many frames to keep; 0 keeps all from `start` on.
    every: keep every n-th frame (1 keeps all).

  Raises:
    UserError: a bad value, or a range that does not fit in the clip.
  """
  _check_count('start', start, 0)
  _check_count('frames', frames, 0)
  _check_count('every', every, 1)
  if start >= frame_count:
    raise UserError(f'config.video.start={start} is past the end of the clip '
                    f'(frames 0 to {frame_count - 1}); use a smaller start')
  available = len(range(start, frame_count, every))
  if frames > available:
    raise UserError(
        f'config.video.frames={frames} from start={start} every={every} needs '
        f'frame {start + (frames - 1) * every}, but the clip has frames 0 to '
        f'{frame_count - 1}; use frames <= {available}, or 0 for all')
  return range(start, start + (frames or available) * every, every)


def _float_frame(rgb: np.ndarray, hw: tuple[int, int],
                 quarter_turns: int = 0) -> np.ndarray:
  """uint8[h, w, 3] as float32[H, W, 3] in [0, 1] at `hw`, like load_image.

  Turned `quarter_turns` times counter-clockwise first (display rotation).
  """
  pil = Image.fromarray(np.ascontiguousarray(np.rot90(rgb, quarter_turns)))
  # The same conversion and Lanczos resize as image.load_image.
  return image_lib._to_float_rgb(pil, hw)  # pylint: disable=protected-access


def iter_frames(info: ClipInfo, indices: range,
                long_side: int | None = None) -> Iterator[np.ndarray]:
  """Yields the frames `indices` of the clip as float32[H, W, 3] in [0, 1].

  Args:
    info: from `probe`.
    indices: increasing frame indices, e.g. from `select_frames`.
    long_side: resize (Lanczos) so the long side is this many pixels; the
      size is `image.resized_hw(info.hw, long_side)`. None keeps `info.hw`.

  Raises:
    UserError: a frame cannot be decoded, or the video ends early.
  """
  if info.frame_files:
    for index in indices:
      yield image_lib.load_image(info.frame_files[index], long_side)
    return
  if not indices:
    return
  av = _av()
  hw = image_lib.resized_hw(info.hw, long_side)
  wanted, last = set(indices), indices[-1]
  index = -1
  try:
    with av.open(str(info.source)) as container:
      stream = container.streams.video[0]
      stream.thread_type = 'AUTO'
      for frame in container.decode(stream):
        index += 1
        if index in wanted:
          yield _float_frame(frame.to_ndarray(format='rgb24'), hw,
                             info.quarter_turns)
        if index >= last:
          return
  except av.error.FFmpegError as e:
    raise UserError(f'{info.source} is corrupt at frame {index + 1} ({e}); '
                    're-encode it or choose frames before it') from e
  raise UserError(f'{info.source} ended after {index + 1} frames, not the '
                  f'{info.frame_count} its header gives; use frames below '
                  f'{index + 1} or re-encode the file')


def read_clip(source: str | os.PathLike[str], *, start: int = 0,
              frames: int = 0, every: int = 1, long_side: int | None = None,
              fps: Fraction | float | None = None) -> Clip:
  """Reads frames of a video file or frame folder into memory.

  Args:
    source: a video file or a folder of frames.
    start, frames, every: the selection (see `select_frames`).
    long_side: resize so the long side of a frame is this many pixels
      (`image.resized_hw`); None keeps the clip's display size.
    fps: the clip's frame rate, overriding the file's (a folder has none of
      its own: FOLDER_FPS).

  Returns:
    Clip with frames float32[T, H, W, 3] in [0, 1], the selection's frame
    rate (fps / every, so the selection lasts as long as in the clip) and its
    audio span (None without audio).
  """
  info = probe(source)
  if fps is not None:
    if not fps or fps <= 0:
      raise UserError(f'config.video.fps must be positive, got {fps!r}')
    info = info._replace(fps=Fraction(fps).limit_denominator(1001))
  indices = select_frames(info.frame_count, start, frames, every)
  array = np.stack(list(iter_frames(info, indices, long_side)))
  audio = None
  if info.has_audio:
    start_s = indices[0] / info.fps
    audio = AudioSpan(info.source, float(start_s),
                      float(start_s + len(indices) * every / info.fps))
  return Clip(array, info.fps / every, audio, info, indices)


# --- Writing ------------------------------------------------------------------


def _to_uint8(frame: np.ndarray) -> np.ndarray:
  """float[H, W, 3] in [0, 1] as uint8, rounded as image.save_png does."""
  frame = np.asarray(frame, np.float32)
  if frame.ndim != 3 or frame.shape[2] != 3:
    raise ValueError(f'a frame must be float[H, W, 3], got {frame.shape}')
  return np.round(np.clip(np.nan_to_num(frame), 0.0, 1.0) * 255.0).astype(
      np.uint8)


def frame_path(folder: str | os.PathLike[str], index: int) -> Path:
  """Where `write_frames` puts frame `index`: folder/frame_00000.png, ..."""
  return Path(folder).expanduser() / f'frame_{index:05d}.png'


def write_frames(folder: str | os.PathLike[str], frames: Iterable[np.ndarray],
                 *, first_index: int = 0) -> list[Path]:
  """Writes each float[H, W, 3] frame as `frame_path(folder, index)` (PNG).

  Frames are numbered from `first_index`; each file is written atomically.
  """
  return [image_lib.save_png(frame_path(folder, index), frame)
          for index, frame in enumerate(frames, start=first_index)]


def writer_for(path: str | os.PathLike[str]) -> _Writer:
  """The container and codecs for `path`'s suffix, or a one-line UserError."""
  suffix = Path(path).suffix.lower()
  if suffix not in WRITERS:
    raise UserError(f'cannot write video {path}: the {suffix or "(none)"} '
                    f'format is not supported; end the name in one of '
                    f'{", ".join(WRITERS)}')
  writer = WRITERS[suffix]
  av = _av()
  for codec in (writer.codec, writer.audio_codec):
    if codec is None:
      continue
    try:
      av.codec.Codec(codec, 'w')
    except av.codec.codec.UnknownCodecError as e:
      raise UserError(f'cannot write {path}: this ffmpeg has no {codec} '
                      f'encoder; choose another format ({", ".join(WRITERS)})'
                      f' or reinstall the video extra: {VIDEO_EXTRA}') from e
  return writer


def _pal8(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """uint8[H, W, 3] as (indices uint8[H, W], ARGB palette uint8[256, 4])."""
  quantized = Image.fromarray(frame).quantize(256)
  rgb = np.array(quantized.getpalette(), np.uint8).reshape(-1, 3)[:256]
  palette = np.zeros((256, 4), np.uint8)
  palette[:, 0] = 255  # Opaque.
  palette[:len(rgb), 1:] = rgb
  return np.asarray(quantized), palette


def _add_audio(container: Any, writer: _Writer, span: AudioSpan
               ) -> tuple[Any, Any, Any, bool]:
  """Opens span's audio and adds a stream for it to `container`.

  Returns (input container, input stream, output stream, whether packets are
  copied as they are) or Nones when there is nothing to add.
  """
  av = _av()
  source = av.open(str(span.source))
  if not source.streams.audio:
    source.close()
    return None, None, None, False
  stream = source.streams.audio[0]
  if stream.codec_context.name in container.supported_codecs:
    return source, stream, container.add_stream_from_template(stream), True
  rates = av.codec.Codec(writer.audio_codec, 'w').audio_rates
  rate = stream.rate if not rates or stream.rate in rates else 48000
  output = container.add_stream(writer.audio_codec, rate=rate)
  layout = stream.codec_context.layout
  output.layout = layout.name if len(layout.channels) <= 2 else 'stereo'
  return source, stream, output, False


def _mux_audio(container: Any, source: Any, stream: Any, output: Any,
               copy: bool, span: AudioSpan) -> None:
  """Muxes the audio of `span` (shifted to start at 0) into `output`."""
  base = stream.time_base
  start_pts, end_pts = span.start_s / base, span.end_s / base
  if span.start_s > 0:
    source.seek(int(span.start_s / base), stream=stream, backward=True)
  if copy:
    shift = int(start_pts)
    for packet in source.demux(stream):
      if packet.pts is None or packet.dts is None:
        continue  # The flush packet at the end.
      if packet.pts >= end_pts:
        break
      if packet.pts < start_pts:
        continue
      packet.pts -= shift
      packet.dts -= shift
      packet.stream = output
      container.mux(packet)
    return
  resampler = None
  next_pts = 0
  for frame in source.decode(stream):
    if frame.pts is None or frame.pts >= end_pts:
      break
    if frame.pts < start_pts:
      continue
    frame.pts = None
    if resampler is None:
      resampler = _av().AudioResampler(
          format=output.codec_context.format, layout=output.layout,
          rate=output.rate)
    for resampled in resampler.resample(frame):
      resampled.pts = next_pts
      next_pts += resampled.samples
      container.mux(output.encode(resampled))
  container.mux(output.encode(None))


def write_video(path: str | os.PathLike[str], frames: Iterable[np.ndarray],
                fps: Fraction | float, *, audio: AudioSpan | None = None
                ) -> Path:
  """Encodes frames float[H, W, 3] in [0, 1] as a video file, atomically.

  The format comes from the suffix (`WRITERS`): .mp4/.m4v/.mov/.mkv hold
  H.264 (CRF 18), .webm VP9 (CRF 30), .gif a 256-colour palette per frame.
  Every frame is kept and played at `fps`. H.264 and VP9 in yuv420p need
  even sizes: an odd last row or column is cropped (the size ratio changes by
  under a pixel). `audio`, if given, is copied packet by packet when the
  container can hold its codec (else re-encoded: AAC, or Opus for webm), cut
  to its span; gif has no audio, which is then dropped with a warning.

  Raises:
    UserError: an unsupported suffix, an encoder this ffmpeg lacks, no
      frames, frames of different sizes, a folder that cannot be written, or
      PyAV missing.
  """
  path = Path(path).expanduser()
  writer = writer_for(path)
  av = _av()
  fps = Fraction(fps).limit_denominator(1001)
  if fps <= 0:
    raise UserError(f'cannot write {path} at {fps} frames per second; the '
                    'frame rate must be positive')
  iterator = iter(frames)
  first = next(iterator, None)
  if first is None:
    raise UserError(f'no frames to write to {path}')
  height, width = np.shape(first)[:2]
  if writer.pixel_format == 'yuv420p':
    height, width = height - height % 2, width - width % 2
  if writer.container == 'gif' and audio is not None:
    log.warning('%s: gif holds no audio; the audio of %s is dropped', path,
                audio.source)
    audio = None

  def encode(f: Any) -> None:
    with av.open(f, 'w', format=writer.container) as container:
      stream = container.add_stream(writer.codec, rate=fps,
                                    options=dict(writer.options))
      stream.width, stream.height = width, height
      stream.pix_fmt = writer.pixel_format
      source = audio_in = audio_out = None
      copy = False
      if audio is not None:
        source, audio_in, audio_out, copy = _add_audio(container, writer,
                                                       audio)
      try:
        for index, frame in enumerate(_chain(first, iterator)):
          pixels = _to_uint8(frame)
          if pixels.shape[:2] != np.shape(first)[:2]:
            raise UserError(f'frame {index} to write to {path} is '
                            f'{pixels.shape[1]}x{pixels.shape[0]}, not '
                            f'{np.shape(first)[1]}x{np.shape(first)[0]} as '
                            'frame 0; every frame of a video has one size')
          pixels = pixels[:height, :width]
          if writer.pixel_format == 'pal8':
            video_frame = av.VideoFrame.from_ndarray(_pal8(pixels),
                                                     format='pal8')
          else:
            video_frame = av.VideoFrame.from_ndarray(pixels, format='rgb24')
          video_frame.pts = index
          video_frame.time_base = 1 / fps
          container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
        if source is not None:
          _mux_audio(container, source, audio_in, audio_out, copy, audio)
      finally:
        if source is not None:
          source.close()

  try:
    return files.atomic_write(path, encode)
  except av.error.FFmpegError as e:
    raise UserError(f'ffmpeg could not write {path} ({e}); try another '
                    f'format ({", ".join(WRITERS)})') from e


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]
           ) -> Iterator[np.ndarray]:
  yield first
  yield from rest


def strip(frames: Sequence[np.ndarray] | np.ndarray, count: int = 6, *,
          gap_px: int = 4) -> np.ndarray:
  """`count` frames evenly spread over the clip, side by side on white.

  Args:
    frames: float[T, H, W, 3] in [0, 1].
    count: how many frames (all of them if T is smaller); the first and the
      last frame are always in.
    gap_px: white pixels between frames.

  Returns:
    float32[H, n W + (n - 1) gap_px, 3] in [0, 1].
  """
  frames = np.asarray(frames, np.float32)
  if frames.ndim != 4 or frames.shape[0] < 1 or count < 1:
    raise ValueError(f'strip wants frames [T, H, W, 3] and count >= 1, got '
                     f'{list(frames.shape)} and {count}')
  t_count, h, w = frames.shape[:3]
  n = min(count, t_count)
  picks = np.round(np.linspace(0, t_count - 1, n)).astype(int)
  out = np.ones((h, n * w + (n - 1) * gap_px, 3), np.float32)
  for i, t in enumerate(picks):
    out[:, i * (w + gap_px):i * (w + gap_px) + w] = frames[t]
  return out


def save_strip(path: str | os.PathLike[str],
               frames: Sequence[np.ndarray] | np.ndarray, count: int = 6, *,
               gap_px: int = 4) -> Path:
  """Saves `strip(frames, count, gap_px=gap_px)` as a PNG; returns its path."""
  return image_lib.save_png(path, strip(frames, count, gap_px=gap_px))
