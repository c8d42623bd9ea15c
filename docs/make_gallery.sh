#!/usr/bin/env bash
# Makes docs/gallery.md's pictures (docs/gallery/*.png) with the project's own
# configs, at 256 px so that it runs on a laptop CPU in about 20 minutes.
# The non-downloadable images come from NST_ASSETS_DIR (default ../shared/images).
set -euo pipefail
cd "$(dirname "$0")/.."
export NST_ASSETS_DIR="${NST_ASSETS_DIR:-$(cd .. && pwd)/shared/images}"
out=docs/gallery
mkdir -p "$out"
work=$(mktemp -d)
# These pictures were made with the project's previous defaults (the sums of
# configs/gatys_sums.py, their weights set for 256 px), spelled out here so
# that the script still makes exactly them.
at256="--config.image_size=256 --config.max_iterations=200 --config.normalization=seed --config.content_layers=block5_conv2 --config.content_weight=0.3 --config.style_weight=1 --config.tv_weight=0.1"

shoot() {  # shoot NAME ARGS...: one run, its final image copied to docs/gallery/NAME.png
  local name=$1; shift
  python scripts/run.py "$@" --workdir="$work/$name"
  cp "$work/$name/final.png" "$out/$name.png"
}

shoot starry_night            --config=configs/starry.py $at256
shoot the_great_wave          --config=configs/starry.py $at256 --config.content=neuschwanstein --config.style=the_great_wave
shoot the_scream              --config=configs/starry.py $at256 --config.content=moraine_lake --config.style=the_scream
shoot luminance               --config=configs/preserve_color.py $at256
shoot histogram               --config=configs/preserve_color.py:histogram $at256 --config.style=shipwreck_minotaur
shoot blend                   --config=configs/blend_styles.py $at256
shoot sliced_wasserstein      --config=configs/style_losses.py:sliced_wasserstein $at256
shoot multiscale              --config=configs/multiscale.py $at256 --config.max_iterations=100
rm -rf "$work"

# The print-size crop, 1:1 pixels of a 4096 px picture: pass the final.png of
#   python scripts/run.py --config=configs/highres.py   (hours on a CPU: docs/memory.md)
# as HIGHRES_FINAL=<path>; without it docs/gallery/highres_crop.png stays.
if [[ -n ${HIGHRES_FINAL:-} ]]; then
  python - "$HIGHRES_FINAL" "$out/highres_crop.png" <<'PY'
import sys
from PIL import Image
picture = Image.open(sys.argv[1])
assert picture.size == (4096, 3072), picture.size
# 384 x 288 px at the foot of the church's spire, right of centre.
left, top = 2500, 820
picture.crop((left, top, left + 384, top + 288)).save(sys.argv[2], optimize=True)
PY
fi
ls -l "$out"
