r"""Stylise a video (or a folder of frames), steady along its optical flow.

  pip install -e '.[video]'
  python -m nst_jax.testclips --out=outputs/clip --size=256 --frames=24
  python scripts/video.py --config=configs/video.py --workdir=outputs/video
  python scripts/video.py --config=configs/video.py:quick --workdir=outputs/vq
  python scripts/video.py --config=configs/video.py --config.video.mode=sequential
  python scripts/video.py --config=configs/video.py --compare --workdir=outputs/vc

Writes frames/, the video (config.video.output) and strip.png to --workdir
(see nst_jax/video.py). After Ctrl-C or a kill, the same command plus
--config.resume=<workdir> continues. --compare makes the clip three ways
(independent frames, sequential, multipass) and measures each
(nst_jax/video.py, compare_modes; docs/video.md).
"""

from absl import flags

from nst_jax import cli
from nst_jax import video

_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Where outputs go; default outputs/<content>-<style>-<time>.')
_COMPARE = flags.DEFINE_bool(
    'compare', False, 'Make the clip independently, sequentially and in '
    'multipass, and measure flicker, structure, style and time.')


def main(argv):
  config = cli.checked_config(argv, 'configs/video.py')
  if _COMPARE.value:
    cli.call(video.compare_modes, config, _WORKDIR.value)
  else:
    cli.call(video.run, config, _WORKDIR.value)


if __name__ == '__main__':
  cli.run(main)
