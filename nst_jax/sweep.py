r"""Sweeps: many runs of one config, optimised together; their contact sheet.

A sweep lists values for some fields in `config.sweep` (see configs/default.py):
loss weights, style layer weights, seeds, or content photos (a comma list or
a folder). Every combination ('grid') or every i-th tuple ('zip') is a
*member*: the single run whose config is the sweep's with the sweep section
cleared and those values filled in (`spec.member_config`). `spec.parse` makes
the members and `engine.run` optimises them (`transfer.run(config,
sweep=True)` does both), those of one content size
together in one compiled, sharded program (see `nst_jax.engine`); member i's
image equals `scripts/run.py` of member i's config (to float rounding of the
batched convolutions), for every control.

  python scripts/sweep.py --config=configs/starry_sweep.py:quick

Several hosts (e.g. a TPU pod slice): run the same command on every host with
`--distributed`; the mesh then spans every host's devices, each host feeds its
own shards, and host 0 writes the outputs.

Besides the engine's files, the workdir holds one PNG per member (named by
its values), contact_sheet.png and results.jsonl (per member: values, final
loss terms, iterations, evaluations, status, device).
"""

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from nst_jax import image as image_lib
from nst_jax import spec as spec_lib


# --- Contact sheet ------------------------------------------------------------

_PAD = 8


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
  # Pillow's built-in font at a chosen size (Aileron, FreeType); without
  # FreeType Pillow falls back to its fixed 11 px bitmap font.
  try:
    return ImageFont.load_default(size=size)
  except ImportError:
    return ImageFont.load_default()


def contact_sheet(images: Sequence[np.ndarray], labels: Sequence[Sequence[str]],
                  num_cols: int, *, tile_size: int = 128, title: str = '',
                  row_headers: Sequence[str] = (),
                  col_headers: Sequence[str] = ()) -> Image.Image:
  """Tiles the images in rows of `num_cols`, each labelled underneath.

  Args:
    images: RGB float[H_i, W_i, 3] in [0, 1], each fitted into its tile.
    labels: per image, its lines of text (e.g. 'style_weight=10').
    num_cols: tiles per row; rows follow.
    tile_size: long side of each tile, px (images are resized to it).
    title: text above everything; '\n' separates lines.
    row_headers: text left of each row (for a 2-D grid), or ().
    col_headers: text above each column, or ().

  Returns:
    An RGB PIL image: white background, black text.
  """
  def fitted(image):  # (width, height) of a tile: long side tile_size
    h, w = image.shape[:2]
    scale = tile_size / max(h, w)
    return max(1, round(w * scale)), max(1, round(h * scale))
  tw = max(fitted(image)[0] for image in images)
  th = max(fitted(image)[1] for image in images)
  font_px = max(12, round(tile_size / 9))
  font = _font(font_px)
  line = font_px + 4
  measure = lambda text: math.ceil(font.getlength(text))
  num_rows = -(-len(images) // num_cols)
  lines_per_label = max((len(l) for l in labels), default=0)
  cell_w = max([tw] + [measure(t) for l in labels for t in l]
               + [measure(t) for t in col_headers])
  cell_h = th + lines_per_label * line
  left = max([measure(t) for t in row_headers], default=-_PAD) + _PAD
  title_lines = title.splitlines()
  # Title lines, a gap, then the column headers just above the tiles.
  top = len(title_lines) * line + (_PAD if title_lines else 0)
  top += line if col_headers else 0
  width = max([left + num_cols * (cell_w + _PAD) + _PAD]
              + [measure(t) + 2 * _PAD for t in title_lines])
  height = top + num_rows * (cell_h + _PAD) + _PAD
  sheet = Image.new('RGB', (width, height), 'white')
  draw = ImageDraw.Draw(sheet)
  for j, text in enumerate(title_lines):
    draw.text((_PAD, _PAD // 2 + j * line), text, fill='black', font=font)
  for col, text in enumerate(col_headers):
    x = left + _PAD + col * (cell_w + _PAD)
    draw.text((x + (cell_w - measure(text)) // 2, top - line + 2), text,
              fill='black', font=font)
  for row, text in enumerate(row_headers):
    y = top + _PAD + row * (cell_h + _PAD) + th // 2 - font_px // 2
    draw.text((_PAD, y), text, fill='black', font=font)
  for k, (image, label) in enumerate(zip(images, labels)):
    row, col = divmod(k, num_cols)
    x = left + _PAD + col * (cell_w + _PAD)
    y = top + _PAD + row * (cell_h + _PAD)
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    size = fitted(image)
    # Upscaled small results keep their pixels visible; larger ones are
    # filtered down.
    resample = (Image.Resampling.NEAREST if size[0] > image.shape[1]
                else Image.Resampling.LANCZOS)
    tile = Image.fromarray(pixels).resize(size, resample)
    sheet.paste(tile, (x + (cell_w - size[0]) // 2, y + (th - size[1]) // 2))
    for j, text in enumerate(label):
      draw.text((x + (cell_w - measure(text)) // 2, y + th + 2 + j * line),
                text, fill='black', font=font)
  return sheet


def sheet_for(spec: spec_lib.RunSpec, rows: Sequence[dict], workdir: Path
              ) -> np.ndarray:
  """The sweep's contact sheet from the member PNGs in `workdir`.

  Rows x columns for a 2-D grid, else in order. Returns RGB float32[H, W, 3]
  in [0, 1].
  """
  title = (f'{spec.content_name} x {spec.style_name}, {spec.image_size} px, '
           f'{spec.scale_iterations[-1]} iterations')
  varying = [f for f in spec.fields if len(spec.values[f]) > 1]
  labels = [[f'{f}={spec_lib.format_value(v, f)}' for f, v in r['values'].items()]
            for r in rows]
  row_headers = col_headers = ()
  if spec.mode == 'grid' and len(varying) == 2:
    # itertools.product varies the first field slowest: member index =
    # row * columns + column.
    rows_field, cols_field = varying
    num_cols = len(spec.values[cols_field])
    row_headers = [f'{rows_field}={spec_lib.format_value(v, rows_field)}'
                   for v in spec.values[rows_field]]
    col_headers = [f'{cols_field}={spec_lib.format_value(v, cols_field)}'
                   for v in spec.values[cols_field]]
    title += f'\nrows: {rows_field}, columns: {cols_field}'
  else:
    num_cols = math.ceil(math.sqrt(len(rows)))
  # A diverged member may have no PNG: a grey tile stands in for it.
  images = [image_lib.load_image(workdir / r['file'])
            if (workdir / r['file']).is_file() else np.full((8, 8, 3), 0.5)
            for r in rows]
  sheet = contact_sheet(images, labels, num_cols, tile_size=spec.tile_size,
                        title=title, row_headers=row_headers,
                        col_headers=col_headers)
  return np.asarray(sheet, np.float32) / 255.0
