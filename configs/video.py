r"""A clip stylised with The Starry Night, steady along its optical flow.

  pip install -e '.[video]'    # PyAV (ffmpeg) and OpenCV
  python -m nst_jax.testclips --out=outputs/clip --size=256 --frames=24
  python scripts/video.py --config=configs/video.py --workdir=outputs/video
  python scripts/video.py --config=configs/video.py:quick --workdir=outputs/vq
  python scripts/video.py --config=configs/video.py \
      --config.video.input=my_clip.mp4 --config.video.frames=48

The default input is the test clip the second line makes (a camera pan and
zoom over tubingen with a crop of chelsea sliding across; no video is
committed). ':quick' makes its own 6-frame 48 px clip in the workdir-free
folder outputs/testclip_quick (a smoke run in a minute or two on a CPU).
Fields of config.video (see nst_jax/video_spec.py):
  input, start, frames, every   the clip: a video file or a folder of frames
  mode          'multipass' (every frame of a pass at once) or 'sequential'
  passes, later_iterations, temporal_from_pass, blend   multipass settings
  temporal_weight, gaps         the temporal loss and its frame distances
  chunk         frames per compiled call (0 = all): bounds the memory
  output, fps   the video written (input fps by default, audio copied)
Stop with Ctrl-C; continue with the same command plus --config.resume=<workdir>.
"""

import ml_collections

from configs import starry
from nst_jax import video_spec


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = starry.get_config()
  config.image_size = 256
  config.max_iterations = 100
  config.snapshot_every = 50
  config.video = video_spec.default_video_config()
  config.video.input = 'outputs/clip'
  config.video.later_iterations = 50

  if variant == 'quick':
    from nst_jax import testclips  # pylint: disable=import-outside-toplevel
    config.image_size = 48
    config.max_iterations = 10
    config.snapshot_every = 10
    config.video.input = str(testclips.write_test_clip(
        'outputs/testclip_quick', size=48, frames=6))
    config.video.passes = 3
    config.video.later_iterations = 5
    config.video.gaps = '1,2'
  elif variant:
    raise ValueError(f"unknown variant {variant!r} of configs/video.py: use "
                     "':quick' or nothing")
  return config
