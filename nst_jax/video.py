r"""Video style transfer with a temporal loss (Ruder, Dosovitskiy & Brox).

  python scripts/video.py --config=configs/video.py --workdir=outputs/clip

`run(config, workdir)` reads the frames config.video selects, computes their
optical flow once (`flow.cached_clip_flow`, cached in the workdir) and makes
the frames with the one engine (`engine.run`), each frame a member, with the
temporal term (`temporal.Temporal`) as an extra loss term whose targets (the
frame's stylised neighbours warped into it, and their confidences) are the
member's own:

* 'multipass' (Ruder et al. 2018, section 4.2): the frames of a pass are
  members of one compiled program (config.video.chunk frames per call bounds
  the memory). Pass 1 stylises each frame on its own (config.scales,
  max_iterations). A later pass p runs in two halves, the frames of one
  parity and then the others (red-black): each frame starts from the blend
  (1 - b c) x_t + b c warp(x_{t-d}) of its latest result and its
  neighbour's (b = config.video.blend, c the neighbour's confidence), with
  d = +1 on odd passes and -1 on even ones (the direction alternates), and
  from pass config.video.temporal_from_pass on has the temporal loss towards
  its neighbours t - j and t + j, j in config.video.gaps (each side
  nearest-first), taking each neighbour's latest result. The paper's passes
  run frame after frame, so a frame sees its predecessor's result of the
  same pass; here the second half sees the first half's, and every frame
  is pulled towards both sides (measured: docs/video.md).
* 'sequential': frame t starts from frame t - 1's result warped into it and
  has the temporal loss towards frames t - j; frame 0 runs like a single
  image.

Every unit (pass 1, a later pass's half, or a frame) is an engine run in
runs/, resumed by the engine's own state file after Ctrl-C or SIGKILL; a
unit's results are copied to their folder (atomically) when it ends, and
everything downstream reads them from there, so a resumed clip gives the
same bytes as an uninterrupted one. Run the same command again, or add
--config.resume=<workdir>.

Workdir:
  video.json           the config (a run continues only with the same one)
  input/frame_NNNNN.png   the selected input frames at image_size
  flow/                flow and confidences, .npy files read memory-mapped
                       (recomputed if the frames change)
  runs/pass_1/, runs/pass_P_even/, runs/pass_P_odd/, runs/frame_NNNNN/
                       the engine runs (config.json, losses...)
  passes/pass_P/frame_NNNNN.png      multipass: each pass's results
  frames/frame_NNNNN.png   the stylised frames
  preview.png          a strip of the latest results, updated as they come
  strip.png, <config.video.output>   the strip and the video (input fps,
                       audio copied)
"""

import contextlib
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nst_jax import color
from nst_jax import engine
from nst_jax import files
from nst_jax import flow as flow_lib
from nst_jax import image as image_lib
from nst_jax import phases
from nst_jax import progress
from nst_jax import run_state
from nst_jax import spec as spec_lib
from nst_jax import temporal
from nst_jax import vgg
from nst_jax import video_io
from nst_jax import video_spec
from nst_jax import workdir as workdir_lib
from nst_jax.errors import UserError
from nst_jax.signals import Interrupted

Log = Callable[[str], Any]
RECORD = 'video.json'


def _later(config: ml_collections.ConfigDict, vspec: video_spec.VideoSpec
           ) -> ml_collections.ConfigDict:
  """A frame's config after the first pass / frame: one scale, fewer steps."""
  out = ml_collections.ConfigDict(config.to_dict())
  out.scales, out.scale_iterations = 1, ''
  out.max_iterations = vspec.later_iterations or config.max_iterations
  return out


def _copy(source: Path, target: Path) -> None:
  files.atomic_write(target, lambda f: f.write(source.read_bytes()))


def _with_temporal(spec: spec_lib.RunSpec, weight: float, sides: int
                   ) -> spec_lib.RunSpec:
  """`spec` with the temporal term (neighbours on `sides` sides) in its loss,
  weighted `weight` per member."""
  add = lambda s: dataclasses.replace(  # after the regions' terms, if any
      s, extra_terms=s.extra_terms + (temporal.Temporal(sides=sides),))
  return dataclasses.replace(
      spec, loss_spec=add(spec.loss_spec),
      scale_loss_specs=tuple(add(s) for s in spec.scale_loss_specs),
      members=tuple(dataclasses.replace(
          m, loss_weights={**m.loss_weights, 'temporal': weight})
                    for m in spec.members))


class _Clip:
  """A clip being made: its frames, flow, results and engine runs."""

  def __init__(self, config, vspec: video_spec.VideoSpec, workdir: Path,
               log: Log):
    self.config, self.vspec, self.workdir, self.log = config, vspec, workdir, log
    self.base = video_spec.frame_config(config)
    self.cache: dict = {}  # compiled programs, shared by the units
    self.seconds = 0.0

  def read_input(self) -> None:
    """input/ (the selected frames at image_size) and flow/."""
    vspec, folder = self.vspec, self.workdir / 'input'
    paths = [video_io.frame_path(folder, i) for i in range(len(vspec.indices))]
    if not all(p.is_file() for p in paths):
      frames = video_io.iter_frames(vspec.info, vspec.indices,
                                    long_side=self.config.image_size)
      for path, frame in zip(paths, frames):
        image_lib.save_png(path, frame)
    self.inputs = paths
    # The engine sees the 8-bit frames; the flow is taken on the same.
    self.frames = np.stack([image_lib.load_image(p) for p in paths])
    self.log(f'video: {len(paths)} frames of {vspec.info.source} at '
             f'{self.frames.shape[2]}x{self.frames.shape[1]} px; optical flow '
             f'(gaps {",".join(map(str, vspec.gaps))})')
    self.flow = flow_lib.cached_clip_flow(
        self.frames, flow_lib.FlowSettings(vspec.gaps, vspec.flow_preset),
        self.workdir / 'flow')

  def working(self, rgb: np.ndarray) -> np.ndarray:
    """A result (RGB float32[..., H, W, 3] in [0, 1]) in the space the
    optimiser works in: itself, or with preserve_color='luminance' its grey
    luminance (the frames are optimised as luminance, then recoloured)."""
    if self.config.get('preserve_color') != 'luminance':
      return rgb
    return np.asarray(color.luminance_image(jnp.asarray(rgb)))

  def neighbours(self, results: Sequence[np.ndarray], t: int, direction: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Frame t's neighbours t - direction j, j in gaps, of `results` warped
    into frame t, in the working space (`working`): (Caffe float32[J, H, W,
    3], confidence float32[J, H, W]); a neighbour outside the clip gets
    confidence 0."""
    flows, confidences = ((self.flow.backward, self.flow.backward_confidence)
                          if direction > 0 else
                          (self.flow.forward, self.flow.forward_confidence))
    warped = np.zeros((len(self.vspec.gaps),) + self.frames.shape[1:],
                      np.float32)
    confidence = np.zeros(warped.shape[:-1], np.float32)
    for g, gap in enumerate(self.vspec.gaps):
      s = t - direction * gap
      if 0 <= s < len(results):
        warped[g] = flow_lib.warp(results[s], flows[g, t])
        confidence[g] = confidences[g, t]
    return (np.asarray(vgg.preprocess(jnp.asarray(self.working(warped)))),
            confidence)

  def member_inputs(self, starts: Callable[[int], np.ndarray | None],
                    targets: Callable[[int], tuple[np.ndarray, np.ndarray]]):
    """engine.run's member_inputs from per-frame functions of t (full size)."""
    index = {p.resolve(): t for t, p in enumerate(self.inputs)}

    def inputs(members, hw):
      ts = [index[Path(m.content_path).resolve()] for m in members]
      resize = lambda a, shape: a if a.shape == shape else np.asarray(
          jax.image.resize(a, shape, 'linear'))
      firsts = [starts(t) for t in ts]
      start = None if firsts[0] is None else np.stack(
          [resize(s, hw + (3,)) for s in firsts])
      warped, confidence = zip(*(targets(t) for t in ts))
      j = len(warped[0])
      return start, {'temporal': {
          'warped': np.stack([resize(w, (j,) + hw + (3,)) for w in warped]),
          'confidence': np.stack([resize(c, (j,) + hw) for c in confidence])}}
    return inputs

  def run_unit(self, name: str, config, contents: str, inputs, what: str
               ) -> list[Path]:
    """The engine run runs/<name> (resumed if interrupted); its result PNGs."""
    unit = self.workdir / 'runs' / name
    results = unit / 'results.jsonl'
    state = unit / run_state.STATE_FILE
    if results.is_file() and not state.is_file():
      rows = [json.loads(line) for line in results.read_text().splitlines()]
      return [unit / row['file'] for row in rows]
    config = video_spec.unit_config(config, contents, self.vspec.chunk)
    if state.is_file() and (unit / 'config.json').is_file():
      config.resume = str(unit)
      spec = spec_lib.parse(config, None, sweep=True)
    else:  # never started, or killed before its first saved chunk
      shutil.rmtree(unit, ignore_errors=True)
      spec = spec_lib.parse(config, unit, sweep=True)
    spec = _with_temporal(spec, self.vspec.temporal_weight,
                          2 if self.vspec.mode == 'multipass' else 1)
    t0 = time.perf_counter()
    try:
      result = engine.run(spec, lambda line: self.log(f'[{what}] {line}'),
                          member_inputs=inputs, programs_cache=self.cache)
    except Interrupted as e:
      raise Interrupted(
          f'{str(e).split(";")[0]}; continue the clip with the same command '
          f'plus --config.resume={self.workdir}') from e
    self.seconds += time.perf_counter() - t0
    if result['stopped_by']:  # during the unit's last chunk: it is done
      raise Interrupted(
          f'stopped by {result["stopped_by"]} after {what}, which is saved in '
          f'{unit}; continue the clip with the same command plus '
          f'--config.resume={self.workdir}')
    return [Path(m['file']) for m in result['members']]

  def save_results(self, folder: Path, pngs: Sequence[Path],
                   frames: Sequence[int] | None = None) -> list[np.ndarray]:
    """Copies a unit's PNGs to `folder` as frames `frames` (default 0, 1,
    ...); returns them as read back."""
    frames = range(len(pngs)) if frames is None else frames
    for t, png in zip(frames, pngs, strict=True):
      _copy(png, video_io.frame_path(folder, t))
    return [image_lib.load_image(video_io.frame_path(folder, t))
            for t in frames]

  def load(self, folder: Path) -> list[np.ndarray] | None:
    paths = [video_io.frame_path(folder, t) for t in range(len(self.inputs))]
    if all(p.is_file() for p in paths):
      return [image_lib.load_image(p) for p in paths]
    return None


def _check_record(config, workdir: Path) -> None:
  """Writes video.json, or checks that the run there had this config."""
  record = workdir / RECORD
  wanted = json.loads(video_spec.frame_config(config).to_json()) | {
      'video': json.loads(config.video.to_json())}
  if record.is_file():
    saved = json.loads(record.read_text())['config']
    if saved != wanted:
      had, has = spec_lib.dotted_fields(saved), spec_lib.dotted_fields(wanted)
      changed = sorted(k for k in had.keys() | has.keys()
                       if had.get(k) != has.get(k))
      raise UserError(f'{workdir} holds a video run with other settings '
                      f'({", ".join(changed)}): continue it with the same '
                      'config, or choose a new --workdir')
  else:
    files.atomic_write_text(record, json.dumps({'config': wanted}, indent=1))


def run(config: ml_collections.ConfigDict,
        workdir: str | os.PathLike | None = None, log: Log = print
        ) -> dict[str, Any]:
  """Stylises the clip of config.video; writes everything under `workdir`.

  A workdir that holds an interrupted run of the same config (or
  config.resume) is continued.

  Returns:
    {'workdir', 'frames': [Path per frame], 'video': Path | None, 'strip':
     Path, 'seconds': engine time of this call, 'flow': flow_lib.ClipFlow,
     'inputs': float32[T, H, W, 3] the input frames}.

  Raises:
    UserError: a bad config.video (every problem, one line each) or frame
      config (`spec.parse`'s checks).
    Interrupted: Ctrl-C / SIGTERM; the state was saved.
  """
  # The first unit's time line counts from here (and a process's imports);
  # engine.run starts each later one where the unit before it ended.
  phases.start_run()
  vspec = video_spec.parse_video(config)
  if config.get('resume'):
    workdir = Path(config.resume)
    if not (workdir / RECORD).is_file():
      raise UserError(f'config.resume={config.resume!r} holds no video run '
                      f'(no {RECORD}): give the workdir of a stopped one')
  elif workdir is None:
    workdir = spec_lib.default_workdir(config)
  workdir = Path(workdir)
  # One clip per workdir at a time (each unit's engine run claims its own
  # folder under runs/ too). What is written stays: the clip continues.
  # Process 0 writes, as in the engine.
  claim = workdir_lib.claim(workdir, resume=True) \
      if jax.process_index() == 0 else contextlib.nullcontext()
  with claim:
    _check_record(config, workdir)
    clip = _Clip(config, vspec, workdir, log)
    clip.read_input()
    t0 = time.perf_counter()
    results = (_sequential if vspec.mode == 'sequential' else _multipass)(
        clip, t0)
    return _finish(clip, results)


def _finish(clip: _Clip, results: list[np.ndarray]) -> dict[str, Any]:
  """frames/, the strip and the video of a finished clip; run's result."""
  vspec, workdir, log = clip.vspec, clip.workdir, clip.log
  t_count = len(clip.inputs)
  frames = clip.save_results(workdir / 'frames', [
      video_io.frame_path(clip.last_folder, t) for t in range(t_count)]) \
      if clip.last_folder != workdir / 'frames' else results
  strip = video_io.save_strip(workdir / 'strip.png', frames)
  fps = Fraction(vspec.fps).limit_denominator(1001) if vspec.fps else (
      vspec.info.fps / (vspec.indices.step or 1))
  video = None
  if vspec.output:
    audio = None
    if vspec.info.has_audio:
      start_s = vspec.indices[0] / vspec.info.fps
      audio = video_io.AudioSpan(vspec.info.source, float(start_s),
                                 float(start_s + t_count / fps))
    video = video_io.write_video(workdir / vspec.output, frames, fps,
                                 audio=audio)
  log(f'video: {t_count} frame{"s" * (t_count != 1)} in {workdir / "frames"}'
      + (f', {video} at {float(fps):g} fps' if video else '')
      + f', strip {strip}; {progress.format_seconds(clip.seconds)} '
      f'({clip.seconds / t_count:.2f}s per frame)')
  return {'workdir': workdir, 'frames': [video_io.frame_path(
      workdir / 'frames', t) for t in range(t_count)], 'video': video,
          'strip': strip, 'seconds': clip.seconds, 'flow': clip.flow,
          'inputs': clip.frames}


def _iterations(config) -> int:
  """Iterations of a frame over its scales: the ETA's unit of work."""
  counts = spec_lib.split_list(config.scale_iterations)
  return sum(map(int, counts)) if counts else (
      config.max_iterations * config.scales)


def _eta_line(clip: _Clip, done: float, total: float, t0: float,
              what: str) -> str:
  elapsed = time.perf_counter() - t0
  eta = (progress.format_seconds(elapsed / done * (total - done))
         if done and total > done else '-')
  return (f'video: {what} done; {100 * done / total:.0f}% of the clip in '
          f'{progress.format_seconds(elapsed)}, ETA {eta}')


def _preview(clip: _Clip, results: Sequence[np.ndarray]) -> None:
  video_io.save_strip(clip.workdir / 'preview.png', np.stack(results))


def _sequential(clip: _Clip, t0: float) -> list[np.ndarray]:
  """Frame after frame: t starts from t - 1 warped, temporal loss to t - j."""
  vspec, folder = clip.vspec, clip.workdir / 'frames'
  t_count = len(clip.inputs)
  clip.last_folder = folder
  later = _later(clip.base, vspec)
  costs = [_iterations(clip.base)] + [later.max_iterations] * (t_count - 1)
  results: list[np.ndarray] = []
  for t in range(t_count):
    path = video_io.frame_path(folder, t)
    if not path.is_file():
      start = (lambda _, t=t: None) if t == 0 else (
          lambda _, t=t: clip.working(np.asarray(flow_lib.warp(
              results[t - 1], clip.flow.backward[0, t]))))
      inputs = clip.member_inputs(
          start, lambda s: clip.neighbours(results, s, +1))
      pngs = clip.run_unit(f'frame_{t:05d}', clip.base if t == 0 else later,
                           str(clip.inputs[t]), inputs,
                           f'frame {t + 1}/{t_count}')
      clip.save_results(folder, pngs, [t])
    results.append(image_lib.load_image(path))
    _preview(clip, results)
    clip.log(_eta_line(clip, sum(costs[:t + 1]), sum(costs), t0,
                       f'frame {t + 1}/{t_count}'))
  return results


def _multipass(clip: _Clip, t0: float) -> list[np.ndarray]:
  """Passes over every frame, alternating direction (docstring)."""
  vspec = clip.vspec
  later = _later(clip.base, vspec)
  costs = [_iterations(clip.base)] + [later.max_iterations] * (
      vspec.passes - 1)
  results: list[np.ndarray] | None = None
  for p in range(1, vspec.passes + 1):
    folder = clip.workdir / 'passes' / f'pass_{p}'
    clip.last_folder = folder
    results = clip.load(folder) or _pass(clip, p, results, later, folder)
    _preview(clip, results)
    clip.log(_eta_line(clip, sum(costs[:p]), sum(costs), t0,
                       f'pass {p}/{vspec.passes}'))
  return results


def _pass(clip: _Clip, p: int, previous: list[np.ndarray] | None,
          later: ml_collections.ConfigDict, folder: Path) -> list[np.ndarray]:
  """Pass p's results, saved in `folder`.

  Pass 1 makes every frame at once, on its own. A later pass runs in two
  halves, the frames of one parity and then the others (red-black; which
  parity first alternates with the direction): each frame starts from the
  blend with its warped neighbour t - d and is pulled towards its
  neighbours t -+ j, taking each neighbour's latest result. So the second
  half sees the first half's results of this pass, as the paper's frames
  see their predecessor's, and a pass still runs its frames as members of
  one program per half.
  """
  vspec, t_count = clip.vspec, len(clip.inputs)
  what = f'pass {p}/{vspec.passes}'
  shape = clip.frames.shape[1:]
  no_targets = lambda t: (
      np.zeros((2 * len(vspec.gaps),) + shape, np.float32),
      np.zeros((2 * len(vspec.gaps),) + shape[:2], np.float32))
  if previous is None:
    pngs = clip.run_unit(f'pass_{p}', clip.base, str(clip.workdir / 'input'),
                         clip.member_inputs(lambda t: None, no_targets),
                         f'{what}, {t_count} frames')
    return clip.save_results(folder, pngs)
  direction = 1 if p % 2 else -1
  latest = list(previous)  # takes each half's results when it ends

  def starts(t):
    warped, confidence = clip.neighbours(latest, t, direction)
    c = vspec.blend * confidence[0][..., None]
    neighbour = np.asarray(vgg.deprocess(jnp.asarray(warped[0])))
    return (1.0 - c) * clip.working(latest[t]) + c * neighbour

  def targets(t):
    sides = [clip.neighbours(latest, t, d) for d in (1, -1)]
    return tuple(np.concatenate(parts) for parts in zip(*sides))
  for half in (0, 1):
    frames = [t for t in range(t_count) if (t + p + half) % 2 == 0]
    if not frames:
      continue
    parity = ('even', 'odd')[frames[0] % 2]
    pngs = clip.run_unit(
        f'pass_{p}_{parity}', later,
        ','.join(str(clip.inputs[t]) for t in frames),
        clip.member_inputs(
            starts, targets if p >= vspec.temporal_from_pass else no_targets),
        f'{what}, {len(frames)} {parity} frames')
    for t, image in zip(frames, clip.save_results(folder, pngs, frames)):
      latest[t] = image
  return latest


# The clip made three ways by `compare_modes`: config.video overrides.
COMPARED_MODES = {'independent': {'mode': 'multipass', 'passes': 1},
                  'sequential': {'mode': 'sequential'},
                  'multipass': {'mode': 'multipass'}}


def compare_modes(config: ml_collections.ConfigDict,
                  workdir: str | os.PathLike | None = None, log: Log = print
                  ) -> list[dict[str, Any]]:
  """Makes the clip as independent frames, sequentially and in multipass.

  Each in workdir/<mode> (`run`; 'independent' is one pass without the
  temporal loss: every frame a single-image run). Measured per mode:
  temporal_error (`temporal.temporal_error` along the input's flow, j = 1:
  the paper's flicker measure, in [0, 1] pixel values squared), structure and
  style (`compare.measure` of each frame against its input frame and the
  painting, averaged over the frames), their ratios to 'independent', and
  engine seconds per frame. Writes workdir/compare_video.jsonl.
  """
  from nst_jax import compare  # pylint: disable=import-outside-toplevel
  from nst_jax import weights as weights_lib  # pylint: disable=import-outside-toplevel
  video_spec.parse_video(config)
  workdir = Path(workdir or spec_lib.default_workdir(config))
  params, _ = weights_lib.load_vgg19_params(config.weights or None, log=log)
  rows = []
  for name, overrides in COMPARED_MODES.items():
    variant = ml_collections.ConfigDict(config.to_dict())
    variant.video.update(overrides)
    result = run(variant, workdir / name, log)
    frames = np.stack([image_lib.load_image(p) for p in result['frames']])
    inputs, clip_flow = result['inputs'], result['flow']
    hw = inputs.shape[1:3]
    painting = image_lib.load_image(
        image_lib.resolve_image(spec_lib.split_list(config.style)[0]),
        spec_lib.style_long_side(config.style_scale, hw))
    measures = [compare.measure(params, [f], x, painting)[0]
                for f, x in zip(frames, inputs)]
    rows.append({
        'mode': name, 'frames': len(frames),
        'temporal_error': float(temporal.temporal_error(
            frames, clip_flow.backward[0], clip_flow.backward_confidence[0])),
        'structure': float(np.mean([m['structure'] for m in measures])),
        'style': float(np.mean([m['style'] for m in measures])),
        'seconds_per_frame': result['seconds'] / len(frames)})
  base = rows[0]
  for row in rows:
    for key in ('temporal_error', 'structure', 'style', 'seconds_per_frame'):
      row[f'{key}_vs_independent'] = (row[key] / base[key] if base[key]
                                      else float('nan'))
  files.atomic_write_text(workdir / 'compare_video.jsonl', ''.join(
      json.dumps(row) + '\n' for row in rows))
  log(f'{"mode":12s} {"temporal err":>12s} {"x indep":>8s} {"structure":>9s} '
      f'{"style":>7s} {"s/frame":>8s}')
  for row in rows:
    log(f'{row["mode"]:12s} {row["temporal_error"]:12.3g} '
        f'{row["temporal_error_vs_independent"]:8.3f} {row["structure"]:9.4f} '
        f'{row["style"]:7.4f} {row["seconds_per_frame"]:8.2f}')
  log(f'wrote {workdir / "compare_video.jsonl"}')
  return rows
