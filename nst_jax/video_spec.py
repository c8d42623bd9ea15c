"""config.video: the fields of a video run and their checks (scripts/video.py).

`default_video_config` is the section configs/video.py adds to a frame
config; `parse_video` checks it, probing the input without decoding it, and
the frame config with `spec.parse` (on a blank stand-in of the frames' size),
and reports every problem at once, before anything is written or compiled.
"""

import dataclasses
import difflib
import tempfile
from pathlib import Path
from typing import Any

import ml_collections
from PIL import Image

from nst_jax import image as image_lib
from nst_jax import spec as spec_lib
from nst_jax.errors import UserError

VIDEO_MODES = ('multipass', 'sequential')
# OpenCV's DIS optical flow refuses smaller frames (measured with OpenCV 5.1
# on every size from 4x4 to 39x15, each preset).
MIN_FLOW_SHORT_SIDE, MIN_FLOW_LONG_SIDE = 8, 12


def default_video_config() -> ml_collections.ConfigDict:
  """config.video: the clip and how its frames are made (configs/video.py).

  A section of video configs only (not of `default_config`): each frame is
  made by the engine from the config without it.
  """
  v = ml_collections.ConfigDict()
  v.input = ''                  # a video file (mp4, mov, webm, gif, ...) or a folder of frames
  v.start = 0                   # first frame used (0-based)
  v.frames = 0                  # how many frames; 0 = all from start
  v.every = 1                   # use every n-th frame
  # 'multipass': every frame of a pass optimised at once (members of one
  # program), passes alternating direction; 'sequential': frame after frame,
  # each starting from the previous result warped along the flow.
  v.mode = 'multipass'
  v.passes = 4                  # multipass: passes over the clip
  # Iterations per frame after the first pass (multipass) or the first frame
  # (sequential), at the final size only (their start is close already);
  # 0 = max_iterations. The first pass / frame runs config.scales and
  # max_iterations (or scale_iterations).
  v.later_iterations = 0
  # Weight of the temporal loss, a mean of squared [0, 1] pixel changes: at
  # the default loss weights 1e10 makes sequential frames flicker 16x less
  # than independent ones at 48 px (docs/video.md).
  v.temporal_weight = 1e10
  v.gaps = '1,2,4'              # frame distances of the long-term temporal loss, nearest first
  v.temporal_from_pass = 2      # multipass: the temporal loss from this pass on (>= 2)
  v.blend = 0.5                 # multipass: start = blend of a frame and its warped neighbour
  v.chunk = 0                   # frames per compiled call (bounds memory); 0 = all of a pass
  v.flow_preset = 'fine'        # OpenCV DIS: 'fine', 'medium', 'fast' or 'ultrafast'
  v.output = 'stylised.mp4'     # video file in the workdir (.mp4 .mov .mkv .webm .gif); '' = none
  v.fps = 0.0                   # output frame rate; 0 = the input's (divided by every)
  return v


@dataclasses.dataclass(frozen=True)
class VideoSpec:
  """config.video, checked (see `parse_video`).

  Attributes:
    info: what the input holds (`video_io.probe`).
    indices: the frames used, indices into the clip.
    gaps: frame distances of the temporal loss, increasing.
    fps: the output's frame rate (None: the input's over `every`).
    The others: the config.video fields of the same name.
  """
  info: Any
  indices: range
  mode: str
  passes: int
  later_iterations: int
  temporal_weight: float
  gaps: tuple[int, ...]
  temporal_from_pass: int
  blend: float
  chunk: int
  flow_preset: str
  output: str
  fps: float | None


def frame_config(config: ml_collections.ConfigDict
                 ) -> ml_collections.ConfigDict:
  """The engine's config of a frame: `config` without its video section."""
  values = config.to_dict()
  values.pop('video', None)
  out = ml_collections.ConfigDict(values)
  out.resume = ''
  return out


def unit_config(config: ml_collections.ConfigDict, contents: str, chunk: int
                ) -> ml_collections.ConfigDict:
  """The engine's config of a unit (a pass, a half or a frame): the frame
  config `config` making the frames `contents` (PNGs, a comma list) as the
  members of one sweep, `chunk` of them per compiled call."""
  out = ml_collections.ConfigDict(config.to_dict())
  out.sweep.content = contents
  out.sweep.mode = 'grid'
  out.sweep.chunk = chunk
  return out


def _frame_problems(config: ml_collections.ConfigDict, info: Any,
                    indices: range) -> list[str]:
  """The problems of the frames the clip would make: too small for the
  optical flow, and `spec.parse`'s with the frame config of the first unit
  (every frame of pass 1 in multipass, one frame in sequential).

  `spec.parse` reads image headers only, so one blank PNG of the frames'
  size, named like the first input frame, stands in for every frame:
  nothing is decoded, and nothing is written in the workdir.
  """
  video, problems = config.video, []
  hw = info.hw  # the frames' size in the run, where image_size is usable
  if spec_lib.check_number(config, 'image_size', [], integer=True, minimum=1,
                           maximum=spec_lib.MAX_IMAGE_SIZE):
    hw = image_lib.resized_hw(info.hw, config.image_size)
    if min(hw) < MIN_FLOW_SHORT_SIDE or max(hw) < MIN_FLOW_LONG_SIDE:
      problems.append(
          f'config.image_size={config.image_size} makes the frames '
          f'{hw[1]}x{hw[0]} px, too small for the optical flow (needs >= '
          f'{MIN_FLOW_SHORT_SIDE} px on the short side and >= '
          f'{MIN_FLOW_LONG_SIDE} on the long one): raise image_size')
  members = 1 if video.get('mode') == 'sequential' else (
      len(indices) or max(1, info.frame_count))  # no selection yet: all
  chunk = video.get('chunk')
  chunk = chunk if isinstance(chunk, int) and chunk >= 0 else 0
  with tempfile.TemporaryDirectory() as folder:
    stand_in = Path(folder) / 'frame_00000.png'
    Image.new('RGB', (hw[1], hw[0])).save(stand_in)
    try:
      spec_lib.parse(unit_config(frame_config(config),
                                 ','.join([str(stand_in)] * members), chunk),
                     False, sweep=True)
    except UserError as e:
      problems += str(e).splitlines()
  return problems


def parse_video(config: ml_collections.ConfigDict) -> VideoSpec:
  """Checks config.video (probing its input, not decoding it).

  Raises:
    UserError: every problem found, one line each: unknown fields, bad
      values, an input that is missing, unreadable, without frames or with
      frames of different sizes, a range outside the clip, an output format
      that cannot be written, PyAV or OpenCV not installed, frames too small
      for the optical flow; and `spec.parse`'s problems with the frame
      config, for the first pass (multipass) or frame (sequential).
  """
  from nst_jax import flow  # pylint: disable=import-outside-toplevel
  from nst_jax import video_io  # pylint: disable=import-outside-toplevel
  video = config.get('video')
  if not isinstance(video, ml_collections.ConfigDict):
    raise UserError('config has no video section: start from configs/video.py '
                    '(python scripts/video.py --config=configs/video.py)')
  problems: list[str] = []
  known = default_video_config()
  for key in sorted(set(video.keys()) - set(known.keys())):
    near = difflib.get_close_matches(key, list(known.keys()), n=1)
    problems.append(f'config.video.{key} is not a field: ' + (
        f'did you mean {near[0]}?' if near else 'see configs/video.py'))
  where = 'config.video.'
  selection_ok = all([spec_lib.check_number(  # (a list: check all three)
      video, field, problems, integer=True, minimum=minimum, where=where)
                      for field, minimum in (('start', 0), ('frames', 0),
                                             ('every', 1))])
  for field, kwargs in (
      ('passes', dict(integer=True, minimum=1, maximum=1000)),
      ('later_iterations', dict(integer=True, minimum=0)),
      ('temporal_weight', dict(minimum=0)),
      ('temporal_from_pass', dict(integer=True, minimum=2)),
      ('blend', dict(minimum=0, maximum=1)),
      ('chunk', dict(integer=True, minimum=0)),
      ('fps', dict(minimum=0, maximum=1000))):
    spec_lib.check_number(video, field, problems, where=where, **kwargs)
  if video.get('mode') not in VIDEO_MODES:
    problems.append(f'config.video.mode={video.get("mode")!r}: choose one of '
                    f'{", ".join(map(repr, VIDEO_MODES))}')
  if video.get('flow_preset') not in flow.FLOW_PRESETS:
    problems.append(f'config.video.flow_preset={video.get("flow_preset")!r}: '
                    f'choose one of {", ".join(map(repr, flow.FLOW_PRESETS))}')
  gaps: tuple[int, ...] = ()
  text = str(video.get('gaps', ''))
  try:
    gaps = flow.check_settings(flow.FlowSettings(tuple(
        int(g) for g in spec_lib.split_list(text)))).gaps
  except (ValueError, UserError):
    problems.append(f'config.video.gaps={text!r}: give distinct frame '
                    "distances >= 1 in increasing order, e.g. '1,2,4'")
  if spec_lib.swept_fields(config):
    problems.append(f'config.sweep.{spec_lib.swept_fields(config)[0]} is set: '
                    'a video run makes its frames as the members; clear '
                    'config.sweep')
  try:
    import cv2  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    problems.append('optical flow needs OpenCV, which is not installed; '
                    f'install the video extra: {video_io.VIDEO_EXTRA}')
  output = video.get('output')
  if not isinstance(output, str) or (output and Path(output).name != output):
    problems.append(f'config.video.output={output!r} must be a file name in '
                    "the workdir, e.g. 'stylised.mp4', or '' for frames only")
  elif output:
    try:
      video_io.writer_for(output)
    except UserError as e:
      problems.append(f'config.video.output: {e}')
  info, indices = None, range(0)
  if not isinstance(video.get('input'), str) or not video.input:
    problems.append('config.video.input is empty: give a video file or a '
                    'folder of frames (configs/video.py shows how to make a '
                    'test clip)')
  else:
    try:
      info = video_io.probe(video.input)
    except UserError as e:
      problems.append(f'config.video.input: {e}')
    if info is not None and selection_ok:
      try:  # its messages name the fields
        indices = video_io.select_frames(info.frame_count, video.start,
                                         video.frames, video.every)
      except UserError as e:
        problems.append(str(e))
  if info is not None:  # beside the other problems: all are reported at once
    problems += _frame_problems(config, info, indices)
  if problems:
    raise UserError('\n'.join(problems))
  return VideoSpec(info=info, indices=indices, mode=video.mode,
                   passes=int(video.passes),
                   later_iterations=int(video.later_iterations),
                   temporal_weight=float(video.temporal_weight), gaps=gaps,
                   temporal_from_pass=int(video.temporal_from_pass),
                   blend=float(video.blend), chunk=int(video.chunk),
                   flow_preset=video.flow_preset, output=output,
                   fps=float(video.fps) or None)
