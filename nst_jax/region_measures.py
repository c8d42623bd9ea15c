"""compare.py's measures inside each region of a picture (spatial control).

For a picture styled per region (`nst_jax.regions`), with masks
float32[H, W, R] at the picture's size (`regions.resize_masks`):

* structure inside region r: the SSIM map of the luminances (compare.py's
  window and constants, `compare.ssim` is its mean) averaged with weights
  T_r at the windows' centres (the map covers the valid centres only, so
  the mask is cropped by the window's radius alike). 1 = the photo's
  structure there.
* style inside region r: compare.py's relative Gram distance averaged over
  its 16 VGG19 layers, with the picture's Gram guided by the region
  (`guided.guided_gram`, masks down-sampled per layer by
  `losses.layer_masks`) against the Gram of the region's painting: the
  whole painting, or the painting's own region (its label map's mask).

A region that keeps the photo has only a structure; its style is not
measured. Regions must not be empty at block5 (the check of
`regions.check_nonempty`), or their style is not defined.
"""

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import color
from nst_jax import compare
from nst_jax import guided
from nst_jax import image as image_lib
from nst_jax import losses
from nst_jax import vgg


class RegionTarget(NamedTuple):
  """What one region of the picture is measured against."""
  name: str  # the region's name, e.g. 'blue'; keys 'blue_structure' etc.
  painting: np.ndarray | None  # float32[H', W', 3] in [0, 1]; None: photo
  painting_mask: np.ndarray | None  # float32[H', W'] its region; None: whole


def region_ssim(picture: jax.Array, photo: jax.Array, masks: jax.Array
                ) -> jax.Array:
  """float32[R]: each region's SSIM of the luminances to the photo.

  picture, photo: float32[H, W, 3] in [0, 1] (H, W >= 11); masks
  float32[H, W, R]. The SSIM map weighted by each mask at the windows'
  centres; a region with no centre inside gets NaN.
  """
  def luma(rgb):
    return color.rgb_to_yiq(rgb)[..., 0]
  values = compare.ssim_map(luma(picture), luma(photo))
  r = compare.SSIM_RADIUS
  h, w = picture.shape[:2]
  inside = masks[r:h - r, r:w - r]  # The window centres' weights.
  return (jnp.einsum('hw,hwr->r', values, inside)
          / jnp.sum(inside, axis=(0, 1)))


@jax.jit
def _region_grams(params: Mapping, image: jax.Array, masks: jax.Array
                  ) -> dict[str, jax.Array]:
  """{layer: float32[R, C, C]} guided Grams of an image over compare's layers."""
  feats = vgg.extract_features(params, vgg.preprocess(image[None]),
                               compare.EVAL_LAYERS)
  per_layer = losses.layer_masks(masks, compare.EVAL_LAYERS)
  return {layer: guided.guided_gram(feats[layer][0], per_layer[layer])
          for layer in compare.EVAL_LAYERS}


def painting_grams(params: Mapping, painting: np.ndarray,
                   mask: np.ndarray | None = None) -> dict[str, jax.Array]:
  """{layer: float32[C, C]}: the painting's Grams, or its region's (mask).

  painting float32[H', W', 3] in [0, 1]; mask float32[H', W'] or None for
  the whole painting (then `losses.gram_matrix(.., normalize=True)`).
  """
  painting = jnp.asarray(painting, jnp.float32)
  if mask is None:
    mask = jnp.ones(painting.shape[:2], jnp.float32)
  grams = _region_grams(params, painting, jnp.asarray(mask)[:, :, None])
  return {layer: gram[0] for layer, gram in grams.items()}


def style_distance(picture_grams: Mapping[str, jax.Array],
                   target_grams: Mapping[str, jax.Array]) -> float:
  """compare.py's style: mean over layers of |G_x - G_p|_F / |G_p|_F."""
  return float(np.mean([
      float(jnp.linalg.norm(picture_grams[layer] - target_grams[layer])
            / jnp.linalg.norm(target_grams[layer]))
      for layer in compare.EVAL_LAYERS]))


def measure_regions(params: Mapping, pictures: Sequence[np.ndarray],
                    photo: np.ndarray, masks: np.ndarray,
                    targets: Sequence[RegionTarget]) -> list[dict[str, float]]:
  """Per picture, each region's structure and (if styled) style.

  Args:
    params: VGG19 params (real weights for real measures).
    pictures: RGB float32[H, W, 3] in [0, 1], each the photo's shape.
    photo: RGB float32[H, W, 3] in [0, 1], H, W >= 16.
    masks: float32[H, W, R] the regions at the photo's size.
    targets: R RegionTargets, in the masks' order.

  Returns:
    Per picture {'<name>_structure': float, '<name>_style': float (styled
    regions only)}, flat so that compare.jsonl rows can take them.
  """
  masks = jnp.asarray(masks, jnp.float32)
  if masks.shape[:2] != photo.shape[:2] or masks.shape[2] != len(targets):
    raise ValueError(f'masks {masks.shape} do not fit the photo '
                     f'{photo.shape} and {len(targets)} regions')
  for picture in pictures:
    if picture.shape != photo.shape:
      raise ValueError(f'picture {picture.shape} and photo {photo.shape} differ')
  wanted = {t.name: painting_grams(params, t.painting, t.painting_mask)
            for t in targets if t.painting is not None}
  photo = jnp.asarray(photo)
  rows = []
  for picture in pictures:
    picture = jnp.asarray(picture)
    structure = region_ssim(picture, photo, masks)
    grams = _region_grams(params, picture, masks) if wanted else {}
    row = {}
    for r, target in enumerate(targets):
      row[f'{target.name}_structure'] = float(structure[r])
      if target.name in wanted:
        row[f'{target.name}_style'] = style_distance(
            {layer: gram[r] for layer, gram in grams.items()},
            wanted[target.name])
    rows.append(row)
  return rows



def measure_run(params: Mapping, spec, pictures: Sequence[np.ndarray],
                photo: np.ndarray) -> list[dict[str, float]]:
  """`measure_regions` of pictures of a run with regions (spec.RunSpec).

  The photo's regions at its size (feathered as in the run); each styled
  region against its painting (config.style entry) at style_scale times the
  photo's long side, whole or its own region (config.style_regions). [] per
  picture when the run has no regions.
  """
  plan = spec.regions
  if plan is None:
    return [{} for _ in pictures]
  hw = photo.shape[:2]
  masks = plan.masks(hw)
  long_side = max(16, round(max(hw) * spec.style_scale))
  targets = []
  for entry in plan.mapping:
    name = plan.content.names[entry.region]
    if entry.style is None:
      targets.append(RegionTarget(name, None, None))
      continue
    painting = image_lib.load_image(spec.style_paths[entry.style], long_side)
    mask = None
    if entry.style_region is not None:
      mask = plan.style_masks(entry.style, painting.shape[:2])[
          ..., entry.style_region]
    targets.append(RegionTarget(name, painting, mask))
  return measure_regions(params, pictures, photo, masks, targets)
