r"""A print-size picture: coarse-to-fine to 4096 px, resumable.

  python scripts/run.py --config=configs/highres.py   # hours on a CPU: docs/memory.md
  python scripts/run.py --config=configs/highres.py:quick
  python scripts/run.py --config=configs/highres.py --config.resume=<workdir>

Four scales, 512 -> 1024 -> 2048 -> 4096 px (long side), with most iterations
where they are cheap: one iteration at 4096 px costs about 64 times one at
512 px. Each scale starts from the previous picture upsampled, so the large
scales only refine the brush strokes that the small ones laid out; the
log gives progress and an ETA per scale. The memory path is chosen per scale
(config.memory='auto'): the whole network where it fits, VGG blocks
recomputed or spatial tiles where it does not, with the same loss either way
(nst_jax/losses.py); --config.memory_budget=16 keeps its plan within 16 GiB
on a larger machine. The state is saved as the run goes, so Ctrl-C or a
killed machine loses at most a few minutes: rerun with --config.resume.

The style image is resized with the content at every scale (style_scale=1),
so the picture keeps the look it has at 512 px. The named images are at most
1,200 px wide; for a print, pass a large photo and painting:
--config.content=photo.jpg --config.style=painting.jpg.
"""

import ml_collections

from configs import default
from configs import starry


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = starry.get_config()
  config.image_size = 4096
  config.scales = 4
  config.scale_ratio = 2.0
  # Iterations per scale, smallest first.
  config.scale_iterations = '300,100,30,10'
  # A 4096 px PNG is ~30 MB: a snapshot every 10 iterations, not every 50.
  config.snapshot_every = 10
  return default.apply_variant(config, variant, quick={
      'image_size': 128, 'scales': 2, 'scale_iterations': '10,4',
      'snapshot_every': 5})
