"""Synthetic clips whose optical flow and occlusions are known exactly.

`pan_zoom_clip` films a photo with a camera that pans and zooms, and pastes a
sprite (a crop of another picture) over it that slides across the frame. The
motion is analytic, so `TestClip.flow(a, b)` is the true flow and
`TestClip.occluded(a, b)` the true occlusion mask between any two frames: the
yardstick for `nst_jax.flow` and for the temporal measures of video runs.

Coordinates: pixel (row i, column j) has its centre at x = j, y = i; a flow
is float32[H, W, 2] holding (dx, dy) in pixels, as in OpenCV and
`nst_jax.flow`. Frames are rendered by bilinear sampling in numpy, on purpose
independent of `nst_jax.flow.warp`, which they are used to test.
"""

import dataclasses

import numpy as np
from PIL import Image


def _sample(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Bilinear samples of float[h, w, 3] `image` at (x, y), edges clamped."""
  h, w = image.shape[:2]
  x = np.clip(x, 0.0, w - 1.0)
  y = np.clip(y, 0.0, h - 1.0)
  x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
  fx, fy = (x - x0)[..., None], (y - y0)[..., None]
  x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
  top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
  bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
  return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _resize(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  """float32[h, w, 3] in [0, 1] Lanczos-resized (antialiased) to `hw`."""
  pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
  resized = Image.fromarray(pixels).resize(hw[::-1], Image.Resampling.LANCZOS)
  return np.asarray(resized, dtype=np.float32) / 255.0


@dataclasses.dataclass(frozen=True)
class TestClip:
  """A rendered clip and its analytic motion (see `pan_zoom_clip`).

  Frame t shows background point `centre_t + scale_t * (p - frame_centre)` at
  pixel p, with centre_t = `view_centre + t * pan` and scale_t =
  `zoom ** -t`; the sprite's top-left corner is at `sprite_corner + t *
  sprite_velocity` (frame pixels), drawn over the background.
  """
  __test__ = False  # Not a pytest class, despite its name.

  frames: np.ndarray  # float32[T, H, W, 3] in [0, 1].
  view_centre: tuple[float, float]  # (x, y) in background pixels at t = 0.
  pan: tuple[float, float]  # (dx, dy) background pixels per frame.
  zoom: float  # Magnification per frame (> 1 zooms in).
  sprite_corner: tuple[float, float]  # (x, y) of its top-left at t = 0.
  sprite_velocity: tuple[float, float]  # (dx, dy) frame pixels per frame.
  sprite_hw: tuple[int, int]  # (height, width) in frame pixels.

  @property
  def hw(self) -> tuple[int, int]:
    return self.frames.shape[1], self.frames.shape[2]

  def _grid(self) -> tuple[np.ndarray, np.ndarray]:
    h, w = self.hw
    return np.meshgrid(np.arange(w, dtype=np.float64),
                       np.arange(h, dtype=np.float64))

  def _in_sprite(self, t: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether frame positions (x, y) show the sprite in frame t."""
    u = x - (self.sprite_corner[0] + t * self.sprite_velocity[0])
    v = y - (self.sprite_corner[1] + t * self.sprite_velocity[1])
    return ((u >= 0) & (u < self.sprite_hw[1]) & (v >= 0)
            & (v < self.sprite_hw[0]))

  def flow(self, a: int, b: int) -> np.ndarray:
    """True flow from frame a to frame b: float32[H, W, 2] (dx, dy) in px.

    Pixel p of frame a shows the point that frame b shows at p + flow[p]
    (there or hidden behind the sprite, or outside frame b: `occluded`).
    """
    x, y = self._grid()
    (h, w), (cx, cy) = self.hw, self.view_centre
    fx, fy = (w - 1) / 2, (h - 1) / 2
    scale_a, scale_b = self.zoom ** -a, self.zoom ** -b
    # Background: frame a -> background -> frame b.
    qx = cx + a * self.pan[0] + scale_a * (x - fx)
    qy = cy + a * self.pan[1] + scale_a * (y - fy)
    bx = fx + (qx - cx - b * self.pan[0]) / scale_b
    by = fy + (qy - cy - b * self.pan[1]) / scale_b
    flow = np.stack([bx - x, by - y], axis=-1)
    sprite = self._in_sprite(a, x, y)
    flow[sprite] = np.multiply(self.sprite_velocity, b - a)
    return flow.astype(np.float32)

  def occluded(self, a: int, b: int) -> np.ndarray:
    """bool[H, W]: pixels of frame a whose point frame b does not show.

    True where the point leaves frame b (its centre lands more than half a
    pixel outside) or, for background, lands under the sprite in frame b.
    The sprite itself stays in frame (checked when the clip is made).
    """
    x, y = self._grid()
    h, w = self.hw
    flow = self.flow(a, b)
    bx, by = x + flow[..., 0], y + flow[..., 1]
    outside = (bx < -0.5) | (bx > w - 0.5) | (by < -0.5) | (by > h - 0.5)
    hidden = ~self._in_sprite(a, x, y) & self._in_sprite(b, bx, by)
    return outside | hidden


def pan_zoom_clip(background: np.ndarray, sprite: np.ndarray, *,
                  hw: tuple[int, int] = (48, 64), frames: int = 6,
                  pan: tuple[float, float] = (1.5, 0.5), zoom: float = 1.02,
                  sprite_hw: tuple[int, int] | None = None,
                  sprite_corner: tuple[float, float] | None = None,
                  sprite_velocity: tuple[float, float] = (2.0, 1.0)
                  ) -> TestClip:
  """Renders a camera pan and zoom over `background` with a sliding sprite.

  The photo is Lanczos-resized (covering, centre-cropped) so that the views of
  all frames fit inside it at about one photo pixel per frame pixel; the
  sprite picture is resized to `sprite_hw` and moves in straight lines at
  sub-pixel speeds (bilinear sampling, clamped at its own edges).

  Args:
    background: float32[Hb, Wb, 3] in [0, 1], e.g. a shared photo.
    sprite: float32[Hs, Ws, 3] in [0, 1], e.g. a crop of another image.
    hw: (height, width) of the frames in pixels.
    frames: number of frames T >= 1.
    pan: camera motion (dx, dy) in background pixels per frame.
    zoom: magnification per frame; 1 is no zoom, > 1 zooms in.
    sprite_hw: (height, width) of the sprite; default a third of the frame.
    sprite_corner: (x, y) of the sprite's top-left corner in frame 0; default
      a quarter of the frame from its top-left corner.
    sprite_velocity: (dx, dy) of the sprite in frame pixels per frame.

  Returns:
    The TestClip, frames float32[T, H, W, 3] in [0, 1].

  Raises:
    ValueError: bad sizes, or the sprite would leave the frame.
  """
  h, w = hw
  if h < 2 or w < 2 or frames < 1 or zoom <= 0:
    raise ValueError(f'need hw >= (2, 2), frames >= 1 and zoom > 0, got '
                     f'{hw}, {frames}, {zoom}')
  sprite_hw = sprite_hw or (max(1, h // 3), max(1, w // 3))
  sprite_corner = sprite_corner or (w / 4, h / 4)
  last = frames - 1
  for t in (0, last):
    x0 = sprite_corner[0] + t * sprite_velocity[0]
    y0 = sprite_corner[1] + t * sprite_velocity[1]
    if x0 < 0 or y0 < 0 or x0 + sprite_hw[1] > w or y0 + sprite_hw[0] > h:
      raise ValueError(f'the sprite leaves the {w}x{h} frame at frame {t} '
                       f'(top-left {x0:g}, {y0:g}); slow it down or move it')

  # The views' extent in background pixels, with the view centre at 0 at t=0.
  half = np.array([(w - 1) / 2, (h - 1) / 2])
  corners = []
  for t in range(frames):
    scale = zoom ** -t
    centre = np.array(pan, dtype=np.float64) * t
    corners += [centre - scale * half, centre + scale * half]
  low, high = np.min(corners, axis=0) - 2, np.max(corners, axis=0) + 2
  need_w, need_h = high - low
  photo_h, photo_w = background.shape[:2]
  cover = max(need_w / photo_w, need_h / photo_h)
  big_hw = (max(int(np.ceil(photo_h * cover)), int(np.ceil(need_h)) + 1),
            max(int(np.ceil(photo_w * cover)), int(np.ceil(need_w)) + 1))
  photo = _resize(background, big_hw)
  # Centre the views' extent on the resized photo.
  offset = (np.array(big_hw[::-1], dtype=np.float64) - (high - low)) / 2 - low
  view_centre = (float(offset[0]), float(offset[1]))
  sprite_image = _resize(sprite, sprite_hw)

  clip = TestClip(
      frames=np.zeros((frames, h, w, 3), np.float32), view_centre=view_centre,
      pan=tuple(map(float, pan)), zoom=float(zoom),
      sprite_corner=tuple(map(float, sprite_corner)),
      sprite_velocity=tuple(map(float, sprite_velocity)),
      sprite_hw=tuple(sprite_hw))
  x, y = clip._grid()  # pylint: disable=protected-access
  for t in range(frames):
    scale = zoom ** -t
    frame = _sample(photo, view_centre[0] + t * pan[0] + scale * (x - half[0]),
                    view_centre[1] + t * pan[1] + scale * (y - half[1]))
    inside = clip._in_sprite(t, x, y)  # pylint: disable=protected-access
    u = x - (sprite_corner[0] + t * sprite_velocity[0])
    v = y - (sprite_corner[1] + t * sprite_velocity[1])
    frame[inside] = _sample(sprite_image, u[inside], v[inside])
    clip.frames[t] = frame
  return clip


def write_test_clip(folder: str, *, size: int = 256, frames: int = 24) -> str:
  """Writes the standard test clip as PNG frames into `folder`; returns it.

  Tubingen panned by (2, 0.5) px and zoomed 0.5% per frame, a 64x85 px crop
  of chelsea (the cat's eye; sizes for size = 256) sliding (3, 1) px per
  frame over it; motions scale with `size`, the frames' long side (4:3
  landscape). Frames already there with the same size and count are kept.

  Args:
    folder: where frame_00000.png ... go (`video_io.frame_path`).
    size: the frames' width in px (height 3/4 of it), >= 16.
    frames: how many, 1 to 48.
  """
  # pylint: disable=import-outside-toplevel  # image I/O only when writing.
  from pathlib import Path
  from nst_jax import image
  from nst_jax import video_io
  if size < 16 or not 1 <= frames <= 48:
    raise ValueError(f'size >= 16 and 1 <= frames <= 48, got {size}, {frames}')
  hw = (size * 3 // 4, size)
  paths = [video_io.frame_path(folder, t) for t in range(frames)]
  if all(p.is_file() for p in paths) and not video_io.frame_path(
      folder, frames).exists() and image.read_image_size(paths[0]) == hw:
    return str(Path(folder))
  k = size / 256
  photo = image.load_image(image.resolve_image('tubingen'), 2 * size)
  cat = image.load_image(image.resolve_image('chelsea'), 2 * size)
  ch, cw = cat.shape[:2]
  sprite = cat[int(0.06 * ch):int(0.56 * ch), int(0.18 * cw):int(0.62 * cw)]
  clip = pan_zoom_clip(photo, sprite, hw=hw, frames=frames,
                       pan=(2.0 * k, 0.5 * k), zoom=1.005,
                       sprite_hw=(max(1, round(64 * k)), max(1, round(85 * k))),
                       sprite_corner=(hw[1] / 8, hw[0] / 4),
                       sprite_velocity=(3.0 * k, 1.0 * k))
  video_io.write_frames(folder, clip.frames)
  return str(Path(folder))


if __name__ == '__main__':
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      description='Writes the test clip (configs/video.py) as PNG frames.')
  parser.add_argument('--out', default='outputs/clip', help='the folder')
  parser.add_argument('--size', type=int, default=256, help='width, px')
  parser.add_argument('--frames', type=int, default=24, help='frame count')
  args = parser.parse_args()
  print(write_test_clip(args.out, size=args.size, frames=args.frames))
