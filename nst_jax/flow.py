"""Optical flow between video frames, its confidence, and warping along it.

The temporal loss of Ruder, Dosovitskiy & Brox (GCPR 2016; IJCV 2018, arXiv
1708.04538) compares each stylised frame with its stylised neighbours warped
along the optical flow of the input frames, weighted by a confidence that is 0
where the flow cannot be trusted. This module gives the three pieces:

* `optical_flow(first, second)`: the flow float32[H, W, 2] (dx, dy) in pixels
  from frame `first` to frame `second`: pixel p of `first` shows what `second`
  shows at p + flow[p]. OpenCV's DIS (Kroeger et al., ECCV 2016, "Fast
  optical flow using dense inverse search"; `pip install -e '.[video]'`),
  on the frames' luminance in 8 bits.
* `confidence(forward, backward)`: the paper's mask, 1 where frame a may be
  warped into frame b, 0 at disocclusions (the forward-backward check
  |w~ + w^|^2 > 0.01 (|w~|^2 + |w^|^2) + 0.5, w~ the forward flow warped to
  frame b), at motion boundaries (|grad u^|^2 + |grad v^|^2 > 0.01 |w^|^2 +
  0.002) and where the flow leaves the frame (content entering it).
* `warp(image, flow)`: backward warping in JAX, bilinear, borders clamped.

`clip_flow` computes forward and backward flow and confidences for every
pair of frames j apart (j in `FlowSettings.gaps`) and `cached_clip_flow`
stores them in a folder of the workdir, one .npy file per array, recomputed
when the frames or the settings change. They are written and read
memory-mapped: a long clip's flow (G x T x H x W x 6 float32, 4.2 GB for 300
frames at 512x384 px and gaps 1, 2, 4) stays on disk, and a pass reads the
pages of the frames it works on.

Why DIS: it is maintained (OpenCV 5), installs as a wheel
(opencv-python-headless, 64 MB) and is deterministic on the CPU; its coarse-to-
fine patch search handles the large motions of real video that a plain JAX
Lucas-Kanade or Horn-Schunck would need many pyramid levels and iterations
for, and the flow is computed once per clip, so the device is not needed.
Measured (2026-12-05, this 2-core CPU shared with other jobs, OpenCV 5.1,
one thread) on `testclips.pan_zoom_clip`: tubingen panned (3.1, 1.0 px per
frame) and zoomed (1% per frame), a 85x64 crop of chelsea sliding over it
(5.7 px per frame), 256x192 px, 12 frames; true mean |flow| 3.5 px per frame.
End-point error (EPE) over the truly visible pixels, all pixels and those the
confidence keeps (c = 1), for frames j = 1 / 2 / 4 apart:

  preset     EPE all px          EPE c=1 px          occluded  visible   ms
                                                     with c=0  with c=0  /flow
  fine       0.14 / 0.24 / 1.09  0.05 / 0.06 / 0.14  95-99%    3.5-10%   20
  medium     0.30 / 0.48 / 1.94  0.12 / 0.16 / 0.35  89-97%    6.5-21%   5
  fast       0.87 / 1.18 / 4.84  0.45 / 0.56 / 1.82  79-95%    16-29%    1.3
  ultrafast  1.07 / 1.43 / 4.80  0.44 / 0.53 / 1.18  82-97%    26-33%    1-2

'fine' is the default: the flow costs little next to stylising a frame. At
j = 4 the sprite moves 23 px, more than DIS follows well (EPE 5.9 px on it,
0.41 px on the background), and the confidence zeroes most of what is wrong
(86% of visible pixels off by > 1 px get c = 0). A whole clip (`clip_flow`: 2 flows and 2 confidences per pair) took
84 ms per frame for gaps (1,) and 221 ms for (1, 2, 4) at 256x192 px. The
flow is deterministic: the same bits with 1, 2 or 4 OpenCV threads.
"""

import hashlib
import json
import logging
import os
from pathlib import Path
import shutil
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import files
from nst_jax.errors import UserError
from nst_jax.video_io import VIDEO_EXTRA

log = logging.getLogger(__name__)

# DIS settings by name: OpenCV's presets, and 'fine' (the 'medium' preset
# refined down to full resolution, finest scale 0).
FLOW_PRESETS: dict[str, tuple[int, int | None]] = {
    # name: (cv2 preset, finest scale or None for the preset's).
    'ultrafast': (0, None),
    'fast': (1, None),
    'medium': (2, None),
    'fine': (2, 0),
}

# The thresholds of the paper (Ruder et al. 2016, section 3.2), in pixels^2.
_DISOCCLUSION_RELATIVE = 0.01
_DISOCCLUSION_ABSOLUTE = 0.5
_BOUNDARY_RELATIVE = 0.01
_BOUNDARY_ABSOLUTE = 0.002

# Bump when the cache's content or its meaning changes.
_CACHE_VERSION = 1


def _cv2() -> Any:
  """The cv2 module, or a UserError naming the extra that installs it."""
  try:
    import cv2  # pylint: disable=g-import-not-at-top  # Optional dependency.
  except ImportError as e:
    raise UserError(f'optical flow needs OpenCV, which is not installed; '
                    f'install the video extra: {VIDEO_EXTRA}') from e
  return cv2


class FlowSettings(NamedTuple):
  """How a clip's flow is computed (also the cache key's settings)."""
  # Frame distances j: the flow and confidence between frames t and t + j.
  # Nearest first; the temporal loss combines them nearest-first.
  gaps: tuple[int, ...] = (1,)
  preset: str = 'fine'  # A key of FLOW_PRESETS.


def check_settings(settings: FlowSettings) -> FlowSettings:
  """`settings` if valid, else a one-line UserError naming the bad value."""
  gaps = tuple(settings.gaps)
  if (not gaps or any(isinstance(j, bool) or not isinstance(j, int) or j < 1
                      for j in gaps)
      or list(gaps) != sorted(set(gaps))):
    raise UserError(f'flow gaps must be distinct positive frame distances in '
                    f'increasing order, e.g. (1, 2, 4); got {settings.gaps!r}')
  if settings.preset not in FLOW_PRESETS:
    raise UserError(f'unknown flow preset {settings.preset!r}; use one of '
                    f'{", ".join(FLOW_PRESETS)}')
  return settings._replace(gaps=gaps)


def _luminance_u8(frame: np.ndarray) -> np.ndarray:
  """uint8[H, W] luminance (Rec. 601 weights) of float[H, W, 3] in [0, 1]."""
  luma = np.asarray(frame, np.float32) @ np.array([0.299, 0.587, 0.114],
                                                  np.float32)
  return np.round(np.clip(luma, 0.0, 1.0) * 255.0).astype(np.uint8)


def optical_flow(first: np.ndarray, second: np.ndarray, *,
                 preset: str = 'fine') -> np.ndarray:
  """The optical flow from `first` to `second` (OpenCV DIS, on the CPU).

  Args:
    first: float[H, W, 3] in [0, 1], the frame the flow lives on.
    second: float[H, W, 3] in [0, 1], the frame it points into.
    preset: a key of FLOW_PRESETS.

  Returns:
    float32[H, W, 2]: (dx, dy) in pixels; pixel p of `first` shows what
    `second` shows at p + flow[p]. Deterministic for the same input.

  Raises:
    UserError: OpenCV is missing, the preset is unknown, or the shapes differ.
  """
  cv2 = _cv2()
  if preset not in FLOW_PRESETS:
    raise UserError(f'unknown flow preset {preset!r}; use one of '
                    f'{", ".join(FLOW_PRESETS)}')
  first, second = np.asarray(first), np.asarray(second)
  if first.shape != second.shape or first.ndim != 3 or first.shape[2] != 3:
    raise UserError(f'optical flow needs two frames of one size [H, W, 3], '
                    f'got {first.shape} and {second.shape}')
  cv_preset, finest = FLOW_PRESETS[preset]
  dis = cv2.DISOpticalFlow_create(cv_preset)
  if finest is not None:
    dis.setFinestScale(finest)
  flow = dis.calc(_luminance_u8(first), _luminance_u8(second), None)
  return np.asarray(flow, np.float32)


@jax.jit
def warp(image: jax.Array, flow: jax.Array) -> jax.Array:
  """Backward warping: out[p] = image at p + flow[p], bilinear.

  Args:
    image: float[H, W, C], the frame to move (e.g. the previous frame).
    flow: float[H, W, 2], (dx, dy) in pixels from the output's pixels into
      `image` (e.g. the flow from the current frame to the previous one).

  Returns:
    float32[H, W, C]. Positions outside `image` take the nearest border pixel
    (clamped), so the output is finite everywhere; `confidence` is 0 there.
    Integer flows move pixels exactly. Differentiable in `image` (and, almost
    everywhere, in `flow`); works under jit and vmap.
  """
  image = jnp.asarray(image, jnp.float32)
  flow = jnp.asarray(flow, jnp.float32)
  h, w = image.shape[:2]
  if flow.shape != (h, w, 2):
    raise ValueError(f'warp wants flow [{h}, {w}, 2] for an image '
                     f'{list(image.shape)}, got {list(flow.shape)}')
  rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32),
                            jnp.arange(w, dtype=jnp.float32), indexing='ij')
  x = jnp.clip(cols + flow[..., 0], 0.0, w - 1.0)
  y = jnp.clip(rows + flow[..., 1], 0.0, h - 1.0)
  x0 = jnp.floor(x).astype(jnp.int32)
  y0 = jnp.floor(y).astype(jnp.int32)
  x1, y1 = jnp.minimum(x0 + 1, w - 1), jnp.minimum(y0 + 1, h - 1)
  fx, fy = (x - x0)[..., None], (y - y0)[..., None]
  top = image[y0, x0] * (1.0 - fx) + image[y0, x1] * fx
  bottom = image[y1, x0] * (1.0 - fx) + image[y1, x1] * fx
  return top * (1.0 - fy) + bottom * fy


def _squared_norm(v: jax.Array) -> jax.Array:
  return jnp.sum(jnp.square(v), axis=-1)


@jax.jit
def confidence(forward: jax.Array, backward: jax.Array) -> jax.Array:
  """The confidence of warping frame a into frame b (Ruder et al. 2016).

  Args:
    forward: float[H, W, 2], the flow w from frame a to frame b (on a's
      pixels).
    backward: float[H, W, 2], the flow w^ from frame b to frame a (on b's
      pixels): the one `warp(frame_a, backward)` moves frame a with.

  Returns:
    float32[H, W] on frame b's pixels: 0 where
    * the forward-backward check fails (disocclusions): with w~ = warp(w, w^),
      |w~ + w^|^2 > 0.01 (|w~|^2 + |w^|^2) + 0.5;
    * at motion boundaries: |grad u^|^2 + |grad v^|^2 > 0.01 |w^|^2 + 0.002,
      gradients by central differences (one-sided at the borders);
    * where p + w^(p) lies outside frame a by more than half a pixel (content
      that entered the frame);
    and 1 elsewhere. Pure JAX (jitted; vmap over pairs of frames works).
  """
  forward = jnp.asarray(forward, jnp.float32)
  backward = jnp.asarray(backward, jnp.float32)
  h, w = backward.shape[:2]
  forward_at_b = warp(forward, backward)
  disoccluded = (
      _squared_norm(forward_at_b + backward)
      > _DISOCCLUSION_RELATIVE * (_squared_norm(forward_at_b)
                                  + _squared_norm(backward))
      + _DISOCCLUSION_ABSOLUTE)
  du_dy, du_dx = jnp.gradient(backward[..., 0])
  dv_dy, dv_dx = jnp.gradient(backward[..., 1])
  boundary = (du_dx ** 2 + du_dy ** 2 + dv_dx ** 2 + dv_dy ** 2
              > _BOUNDARY_RELATIVE * _squared_norm(backward)
              + _BOUNDARY_ABSOLUTE)
  rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32),
                            jnp.arange(w, dtype=jnp.float32), indexing='ij')
  x, y = cols + backward[..., 0], rows + backward[..., 1]
  outside = (x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)
  return jnp.where(disoccluded | boundary | outside, 0.0, 1.0)


class ClipFlow(NamedTuple):
  """Flow and confidence between the frames of a clip, for each gap j.

  Index [g, t] with j = gaps[g]; every array covers all T frames so that the
  frames of a pass are alike (a member axis): where the neighbour t - j (or
  t + j) does not exist, the flow is 0 and the confidence 0.
  """
  gaps: tuple[int, ...]
  # backward[g, t]: float32[H, W, 2], the flow from frame t to frame t - j;
  # warp(out[t - j], backward[g, t]) is frame t - j seen from frame t.
  backward: np.ndarray  # float32[G, T, H, W, 2]
  # backward_confidence[g, t]: float32[H, W], its confidence (frame t).
  backward_confidence: np.ndarray  # float32[G, T, H, W]
  # forward[g, t]: the flow from frame t to frame t + j, for backward passes.
  forward: np.ndarray  # float32[G, T, H, W, 2]
  forward_confidence: np.ndarray  # float32[G, T, H, W]


_ARRAYS = ClipFlow._fields[1:]  # the arrays of a ClipFlow, by name


def _array_shapes(frames_shape: tuple[int, ...], settings: FlowSettings
                  ) -> dict[str, tuple[int, ...]]:
  """{name: shape} of a ClipFlow's arrays for frames [T, H, W, 3]."""
  shape = (len(settings.gaps),) + tuple(frames_shape[:3])
  return {name: shape + ((2,) if 'confidence' not in name else ())
          for name in _ARRAYS}


def clip_flow(frames: np.ndarray, settings: FlowSettings = FlowSettings(),
              out: dict[str, np.ndarray] | None = None) -> ClipFlow:
  """Forward and backward flow and confidence of every pair j frames apart.

  Args:
    frames: float[T, H, W, 3] in [0, 1].
    settings: the gaps j and the DIS preset.
    out: zero-filled arrays to write into, {name: array} with the shapes of
      the result's (e.g. memory-mapped files); None allocates them.

  Returns:
    ClipFlow with arrays over G = len(gaps) and all T frames; gaps >= T give
    all-zero entries. Costs 2 (T - j) `optical_flow` calls per gap j.
  """
  settings = check_settings(settings)
  frames = np.asarray(frames, np.float32)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
    raise UserError(f'clip_flow wants frames [T, H, W, 3], got '
                    f'{list(frames.shape)}')
  t_count = frames.shape[0]
  shapes = _array_shapes(frames.shape, settings)
  if out is None:
    out = {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}
  backward, backward_confidence, forward, forward_confidence = (
      out[name] for name in _ARRAYS)
  for g, gap in enumerate(settings.gaps):
    if gap >= t_count:
      continue
    for t in range(gap, t_count):
      # The pair (t - j, t): flow both ways, and each frame's confidence.
      backward[g, t] = optical_flow(frames[t], frames[t - gap],
                                    preset=settings.preset)
      forward[g, t - gap] = optical_flow(frames[t - gap], frames[t],
                                         preset=settings.preset)
      backward_confidence[g, t] = confidence(forward[g, t - gap],
                                             backward[g, t])
      forward_confidence[g, t - gap] = confidence(backward[g, t],
                                                  forward[g, t - gap])
  return ClipFlow(settings.gaps, backward, backward_confidence, forward,
                  forward_confidence)


def cache_key(frames: np.ndarray, settings: FlowSettings) -> str:
  """Hex SHA-256 of the frames' hashes, the settings and the OpenCV version.

  A changed frame, gap or preset (or OpenCV, whose DIS may change) gives
  another key, so `cached_clip_flow` recomputes.
  """
  frames = np.asarray(frames, np.float32)
  frame_hashes = [hashlib.sha256(np.ascontiguousarray(f).tobytes()).hexdigest()
                  for f in frames]
  text = json.dumps({
      'version': _CACHE_VERSION, 'opencv': _cv2().__version__,
      'gaps': list(settings.gaps), 'preset': settings.preset,
      'shape': list(frames.shape), 'frames': frame_hashes}, sort_keys=True)
  return hashlib.sha256(text.encode('utf-8')).hexdigest()


KEY_FILE = 'key.txt'  # written last: a folder without it is incomplete


def _read_cache(folder: Path, key: str, gaps: tuple[int, ...]
                ) -> ClipFlow | None:
  """The ClipFlow stored in `folder` for `key`, memory-mapped read-only, or
  None: none there, made for other frames or settings, or unreadable."""
  try:
    if (folder / KEY_FILE).read_text().strip() != key:
      log.info('flow: %s was made for other frames or settings; recomputing',
               folder)
      return None
    return _open(folder, gaps)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    log.warning('flow: cannot read %s (%s); recomputing', folder, e)
    return None


def _open(folder: Path, gaps: tuple[int, ...]) -> ClipFlow:
  """The arrays in `folder`, memory-mapped read-only (raises if unreadable)."""
  return ClipFlow(gaps, *(np.load(folder / f'{name}.npy', mmap_mode='r',
                                  allow_pickle=False) for name in _ARRAYS))


def cached_clip_flow(frames: np.ndarray, settings: FlowSettings,
                     folder: str | os.PathLike[str]) -> ClipFlow:
  """`clip_flow`, kept in `folder` (one .npy per array and KEY_FILE, the
  `cache_key` of the frames and settings) and returned memory-mapped.

  A missing, stale or unreadable folder is recomputed into `folder`.partial
  (straight into memory-mapped files: the flow never has to fit in memory),
  which then replaces it, so a killed run leaves the old folder or the new
  one, and a partial one that the next call removes.
  """
  settings = check_settings(settings)
  folder = Path(folder).expanduser()
  key = cache_key(frames, settings)
  stored = _read_cache(folder, key, settings.gaps)
  if stored is not None:
    log.info('flow: read from %s', folder)
    return stored
  partial = folder.with_name(folder.name + '.partial')
  shutil.rmtree(partial, ignore_errors=True)
  partial.mkdir(parents=True)
  out = {name: np.lib.format.open_memmap(partial / f'{name}.npy', mode='w+',
                                         dtype=np.float32, shape=shape)
         for name, shape in _array_shapes(np.shape(frames), settings).items()}
  clip_flow(frames, settings, out)
  for array in out.values():
    array.flush()
  del out
  files.atomic_write_text(partial / KEY_FILE, key)
  shutil.rmtree(folder, ignore_errors=True)
  os.replace(partial, folder)
  # Opened as written, not through _read_cache: that one's None (recompute)
  # would reach the caller as a clip without flow.
  return _open(folder, settings.gaps)


def end_point_error(flow: np.ndarray, true_flow: np.ndarray,
                    mask: np.ndarray | None = None) -> float:
  """Mean |flow - true_flow| in pixels over `mask` (bool[H, W]; all if None)."""
  error = np.linalg.norm(np.asarray(flow) - np.asarray(true_flow), axis=-1)
  if mask is not None:
    error = error[np.asarray(mask, bool)]
  return float(np.mean(error))

