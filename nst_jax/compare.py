r"""How stylised, how recognisable: measures the loss does not optimise.

  python scripts/compare.py --config=configs/starry.py --pastiche
  python scripts/compare.py --config=configs/starry.py --sizes=256,512,1024
  python scripts/compare.py --config=configs/starry.py --pictures=a.png,b.png

Every picture is measured against the run's photo and painting, all resized
to one evaluation size (long side `eval_size` px; the painting's long side is
`style_scale` times it, as in the run), so that pictures made at different
sizes are measured as the same picture:

* structure: SSIM (Wang et al. 2004) of the luminances Y = 0.299 R +
  0.587 G + 0.114 B in [0, 1] of the picture and the photo: Gaussian window
  sigma = 1.5 px (11 taps, valid positions only), C1 = 0.01^2, C2 = 0.03^2,
  averaged over the image. 1 = the photo's structure; higher is closer.
* style: the relative Gram distance |G_x - G_p|_F / |G_p|_F, G = F^T F / (h w)
  (F the post-ReLU features, n = h w positions by C channels), averaged over
  all 16 VGG19 conv layers (max pooling), not only the loss's layers. 0 = the
  painting's feature correlations; lower is closer.
* style_swd: the relative sliced Wasserstein-2 distance of the same features,
  sqrt(mean((sort(F_x D) - Q_p)^2) / mean(Q_p^2)) over 64 fixed random unit
  directions D per layer (Q_p the painting's sorted projections resampled to
  the picture's positions), averaged over the 16 layers: a whole-distribution
  measure that no loss here optimises.
* colour: the sliced Wasserstein-2 distance between the RGB pixel
  distributions of the picture and the painting, in [0, 1] units (64 fixed
  directions); 0 = the painting's palette.
* balance = style / structure: where a picture sits between the painting and
  the photo. The same config at different sizes should keep it (docs/defaults.md, Across sizes).

`compare` runs a config (one run, or a sweep to trace the front), optionally
pastiche (`pip install -e '.[compare]'`) on the same images, size and number
of L-BFGS iterations, measures everything and writes compare.jsonl and
side_by_side.png (photo, painting, then each picture with its measures).
"""

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from nst_jax import baselines
from nst_jax import files
from nst_jax import image as image_lib
from nst_jax import losses
from nst_jax import spec as spec_lib
from nst_jax import sweep
from nst_jax import transfer
from nst_jax import vgg
from nst_jax import weights as weights_lib
from nst_jax.errors import UserError

EVAL_LAYERS: tuple[str, ...] = vgg.CONV_LAYERS
SWD_DIRECTIONS = 64
SSIM_SIGMA, SSIM_RADIUS = 1.5, 5
SSIM_C1, SSIM_C2 = 0.01 ** 2, 0.03 ** 2
_LUMA = (0.299, 0.587, 0.114)
MEASURES = ('structure', 'style', 'style_swd', 'colour', 'balance')


def ssim_map(a: jax.Array, b: jax.Array) -> jax.Array:
  """SSIM map of two float32[H, W] images in [0, 1] (H, W >= 11):
  float32[H - 10, W - 10], entry (i, j) the window centred on pixel
  (i + 5, j + 5) (Gaussian window sigma 1.5 px, 11 taps, valid positions)."""
  taps = jnp.exp(-0.5 * (jnp.arange(-SSIM_RADIUS, SSIM_RADIUS + 1) / SSIM_SIGMA) ** 2)
  window = jnp.outer(taps, taps) / jnp.sum(taps) ** 2
  stack = jnp.stack([a, b, a * a, b * b, a * b])[:, None]  # [5, 1, H, W]
  mu_a, mu_b, aa, bb, ab = jax.lax.conv_general_dilated(
      stack, window[None, None], (1, 1), 'VALID')[:, 0]
  var_a, var_b = aa - mu_a ** 2, bb - mu_b ** 2
  cov = ab - mu_a * mu_b
  return ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)
          / ((mu_a ** 2 + mu_b ** 2 + SSIM_C1) * (var_a + var_b + SSIM_C2)))


def ssim(a: jax.Array, b: jax.Array) -> jax.Array:
  """Mean SSIM of two float32[H, W] images in [0, 1] (H, W >= 11); scalar."""
  return jnp.mean(ssim_map(a, b))


def _relative_sliced(x: jax.Array, p: jax.Array, directions: jax.Array,
                     relative: bool) -> jax.Array:
  """Sliced W2 of the vectors of float32[h, w, C] vs float32[h', w', C]."""
  ours = losses.sorted_projections(x, directions)
  theirs = losses.resample_quantiles(losses.sorted_projections(p, directions),
                                     ours.shape[0])
  squared = jnp.mean((ours - theirs) ** 2)
  return jnp.sqrt(squared / jnp.mean(theirs ** 2) if relative else squared)


@jax.jit
def _features(params: Mapping, image: jax.Array) -> dict[str, jax.Array]:
  """{layer: float32[1, h, w, C]} of every EVAL_LAYERS layer of one image."""
  return vgg.extract_features(params, vgg.preprocess(image[None]), EVAL_LAYERS)


@jax.jit
def _measure(params: Mapping, picture: jax.Array, photo: jax.Array,
             painting: jax.Array, target: Mapping[str, jax.Array],
             key: jax.Array) -> dict[str, jax.Array]:
  luma = jnp.asarray(_LUMA, jnp.float32)
  structure = ssim(picture @ luma, photo @ luma)
  feats = _features(params, picture)
  keys = jax.random.split(key, len(EVAL_LAYERS) + 1)
  gram, swd = [], []
  for layer, layer_key in zip(EVAL_LAYERS, keys[1:]):
    f, t = feats[layer][0], target[layer][0]
    g_x = losses.gram_matrix(f, normalize=True)
    g_p = losses.gram_matrix(t, normalize=True)
    gram.append(jnp.linalg.norm(g_x - g_p) / jnp.linalg.norm(g_p))
    directions = losses.random_directions(layer_key, f.shape[-1], SWD_DIRECTIONS)
    swd.append(_relative_sliced(f, t, directions, relative=True))
  colour = _relative_sliced(
      picture, painting,
      losses.random_directions(keys[0], 3, SWD_DIRECTIONS), relative=False)
  style = jnp.mean(jnp.stack(gram))
  return {'structure': structure, 'style': style,
          'style_swd': jnp.mean(jnp.stack(swd)), 'colour': colour,
          'balance': style / structure}


def measure(params: Mapping, pictures: Sequence[np.ndarray], photo: np.ndarray,
            painting: np.ndarray) -> list[dict[str, float]]:
  """The measures of the module docstring for each picture.

  Args:
    params: VGG19 params (the real weights; `weights.load_vgg19_params`).
    pictures: RGB float32[H, W, 3] in [0, 1], each the photo's shape.
    photo: RGB float32[H, W, 3] in [0, 1], H, W >= 16.
    painting: RGB float32[H', W', 3] in [0, 1], H', W' >= 16; its features
      are computed once for all the pictures.

  Returns:
    Per picture, {'structure', 'style', 'style_swd', 'colour', 'balance'}:
    floats.
  """
  for picture in pictures:
    if picture.shape != photo.shape:
      raise ValueError(f'picture {picture.shape} and photo {photo.shape} differ')
  painting = jnp.asarray(painting)
  target = _features(params, painting)
  rows = []
  for picture in pictures:
    # A fixed key: every picture is measured along the same directions.
    values = _measure(params, jnp.asarray(picture), jnp.asarray(photo),
                      painting, target, jax.random.key(0))
    rows.append({name: float(value) for name, value in values.items()})
  return rows


def _load_at(path: Path, hw: tuple[int, int]) -> np.ndarray:
  """An image file as float32[*hw, 3], resized exactly to `hw` (Lanczos)."""
  rgb = image_lib.load_image(path, max(hw))
  if rgb.shape[:2] != hw:  # another tool rounded the short side differently
    pixels = Image.fromarray(np.round(rgb * 255).astype(np.uint8))
    rgb = np.asarray(pixels.resize(hw[::-1], Image.Resampling.LANCZOS),
                     np.float32) / 255.0
  return rgb


def _run_config(config: ml_collections.ConfigDict, workdir: Path,
                log: Callable[[str], Any]) -> list[tuple[str, Path]]:
  """Runs `config` (a sweep when config.sweep lists values): (label, png)."""
  result = transfer.run(config, workdir, log,
                        sweep=bool(spec_lib.swept_fields(config)))
  pictures = []
  for row in result['members']:
    if row['status'] == 'diverged':
      log(f"{row['file']}: diverged, not measured")
      continue
    label = ', '.join(f'{k}={spec_lib.format_value(v, k)}'
                      for k, v in row['values'].items()) or 'nst_jax'
    pictures.append((label, Path(row['file'])))
  return pictures


def compare(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
            *, sizes: Sequence[int] = (), eval_size: int = 0,
            pastiche: bool = False, pictures: Sequence[str] = (),
            log: Callable[[str], Any] = print,
            region_measures: Callable | None = None) -> list[dict[str, Any]]:
  """Makes (or takes) pictures, measures them, writes the comparison.

  Args:
    config: a run config; its content, style, style_scale and weights are
      the ones measured against. With config.sweep set, every member is run.
    workdir: where runs, compare.jsonl and side_by_side.png go.
    sizes: image sizes to run at (long side, px); () = config.image_size.
    eval_size: the measuring size (long side, px); 0 = the smallest of sizes.
    pastiche: also run pastiche at each size, config.max_iterations L-BFGS
      steps on the same files (UserError when it is not installed).
    pictures: existing image files to measure instead of running anything.
    region_measures: for a config with regions,
      `region_measures.measure_run(params, spec, pictures, photo)`: each
      region's structure and style, added to the rows.

  Returns:
    One row per picture: {'label', 'size', 'file', measures...}.
  """
  workdir = Path(workdir)
  sizes = tuple(sizes) or (int(config.image_size),)
  if any(s < 32 for s in sizes) or (eval_size and eval_size < 32):
    raise UserError(f'sizes {list(sizes)} and eval_size {eval_size} must be '
                    '>= 32 px: pass larger --sizes/--eval_size')
  if pastiche and not baselines.pastiche_available():
    raise UserError('--pastiche needs pastiche and torch: '
                    "pip install -e '.[compare]'")
  eval_size = eval_size or min(sizes)
  # Checks the config, images and weights once, writing nothing.
  first = spec_lib.parse(config, False, sweep=bool(spec_lib.swept_fields(config)))
  content_path = first.members[0].content_path
  photo = image_lib.load_image(content_path, eval_size)
  painting = image_lib.load_image(
      first.style_paths[0], max(16, round(eval_size * first.style_scale)))
  missing = [p for p in pictures if not Path(p).is_file()]
  if missing:
    raise UserError(f'--pictures: no such file(s) {missing}')

  # A run's final.png is named by its workdir.
  made: list[tuple[str, int, Path]] = [
      (Path(p).parent.name if Path(p).stem == 'final' else Path(p).stem,
       eval_size, Path(p)) for p in pictures]
  for size in () if pictures else sizes:
    sized = ml_collections.ConfigDict(config.to_dict())
    sized.image_size = size
    folder = workdir / f'{size}px'
    made += [(label, size, path)
             for label, path in _run_config(sized, folder / 'nst_jax', log)]
    if pastiche:
      theirs = baselines.time_pastiche(content_path, first.style_paths[0],
                                       size, max(1, first.scale_iterations[-1] - 1))
      path = folder / 'pastiche.png'
      image_lib.save_png(path, theirs['image'] / 255.0)
      log(f"pastiche at {size} px: {theirs['steps'] + 1} steps in "
          f"{theirs['setup_s'] + theirs['first_step_s'] + theirs['wall_s']:.1f} s")
      made.append(('pastiche ' + baselines.PASTICHE_VERSION, size, path))

  params, _ = first.weights or weights_lib.load_vgg19_params(log=log)
  images = [_load_at(path, photo.shape[:2]) for _, _, path in made]
  rows = [{'label': label, 'size': size, 'file': str(path), **values}
          for (label, size, path), values in zip(
              made, measure(params, images, photo, painting))]
  if region_measures is not None and first.regions is not None:
    for row, values in zip(rows, region_measures(params, first, images,
                                                 photo)):
      row.update(values)
      log(f"{row['label'][:40]:<40} regions: " + ', '.join(
          f'{k} {v:.4f}' for k, v in values.items()))
  _write(workdir, rows, images, photo, painting, eval_size, log)
  return rows


def _write(workdir: Path, rows: Sequence[dict], pictures: Sequence[np.ndarray],
           photo: np.ndarray, painting: np.ndarray, eval_size: int,
           log: Callable[[str], Any]) -> None:
  """compare.jsonl, side_by_side.png and the printed table."""
  workdir.mkdir(parents=True, exist_ok=True)
  text = ''.join(json.dumps(row) + '\n' for row in rows)
  files.atomic_write_text(workdir / 'compare.jsonl', text)
  images = [photo, painting, *pictures]
  labels = [['photo', 'structure 1'], ['painting', 'style 0']] + [
      [f"{r['label']} @{r['size']}px",
       f"structure {r['structure']:.3f}  style {r['style']:.3f}",
       f"swd {r['style_swd']:.3f}  colour {r['colour']:.3f}"] for r in rows]
  sheet = sweep.contact_sheet(
      images, labels, num_cols=min(4, len(images)), tile_size=min(eval_size, 256),
      title=f'measured at {eval_size} px. structure: SSIM to the photo (higher '
            'is closer)\nstyle, swd: Gram and sliced Wasserstein distances to '
            'the painting over 16 VGG19 layers; colour: palette distance '
            '(lower is closer)')
  image_lib.save_png(workdir / 'side_by_side.png', np.asarray(sheet) / 255.0)
  log(f"{'picture':<40} {'size':>5} " + ' '.join(f'{m:>9}' for m in MEASURES))
  for r in rows:
    log(f"{r['label'][:40]:<40} {r['size']:>5} "
        + ' '.join(f'{r[m]:>9.4f}' for m in MEASURES))
  log(f"wrote {workdir / 'compare.jsonl'} and {workdir / 'side_by_side.png'}")
