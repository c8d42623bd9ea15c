"""The tile grid of memory='tiles': where tiles lie, their halo, and back.

An image float32[H, W, 3] is cut into square tiles of `tile_side` px that
start at multiples of the deepest pool's stride (`vgg.min_image_side`), so
every tile's pooling grid is the whole image's at every layer. Each runs
through VGG19 on a crop with a halo (`tile_halo`) wide enough that its own
part of every feature map equals the whole image's. Tiles are numbered
row-major; tile (i, j) owns, at a layer of block b, the positions
[i t, (i + 1) t) x [j t, (j + 1) t) of the layer's map, t = side / 2**(b - 1).
The last row and column of tiles overhang the image: `interior` says which
of a tile's positions lie in it.
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from nst_jax import vgg

# Tile side (px) of memory='tiles' when LossSpec.tile is 0.
DEFAULT_TILE = 512


def feature_hw(image_hw: tuple[int, int], layer: str) -> tuple[int, int]:
  """(h, w) of `layer`'s features for an image (H, W): halved per pool, floor."""
  pools = vgg.layer_block(layer) - 1
  return image_hw[0] >> pools, image_hw[1] >> pools


def tile_halo(layers: Sequence[str]) -> int:
  """Border (px, a multiple of the pool stride) a tile's crop needs on each side.

  A crop's own border pads with zeros where the image has pixels; that error
  spreads one position per 3x3 conv and is halved (rounding up) by each pool.
  Counting it through the layers up to the deepest gives the width, at the
  deepest level, of the band the crop gets wrong; the halo is that band in
  input pixels, so a tile's interior sees exactly what the whole image does
  (e.g. 96 px for block5_conv2, 80 for block5_conv1).
  """
  wrong = 0
  for block, names in vgg.block_layers(layers).items():
    if block > 1:
      wrong = -(-wrong // 2)
    wrong += len(names)
  return wrong * vgg.min_image_side(layers)


def tile_side(layers: Sequence[str], tile: int = 0) -> int:
  """Tile side (px) actually used: `tile` (0: DEFAULT_TILE) rounded up to a
  multiple of the deepest pool's stride."""
  stride = vgg.min_image_side(layers)
  return -(-(tile or DEFAULT_TILE) // stride) * stride


def tile_grid(hw: tuple[int, int], layers: Sequence[str], tile: int = 0
              ) -> tuple[int, int, int, int]:
  """(side, halo, rows, cols) of the tiling of an (H, W) image, px and counts.

  The side is `tile_side`, but no larger than the image needs.
  """
  side = min(tile_side(layers, tile), tile_side(layers, max(hw)))
  return (side, tile_halo(layers), -(-hw[0] // side), -(-hw[1] // side))


def map_tiles(image: jax.Array, layers: Sequence[str], tile: int,
              tile_fn: Callable, checkpoint: bool) -> Any:
  """Runs tile_fn(crop, origin, (i, j)) over the tiles of an image; stacks them.

  Args:
    image: float32[H, W, 3], Caffe space.
    layers: the layers the tiles must get right (sets stride and halo).
    tile: LossSpec.tile.
    tile_fn: (crop float32[side + 2 halo, side + 2 halo, 3], origin (row, col)
      of the crop's first pixel in the image (traced ints, may be negative),
      tile index (i, j) (traced ints)) -> pytree.
    checkpoint: recompute each tile in the backward pass instead of keeping
      its activations (memory follows one tile).

  Returns:
    tile_fn's pytree with a leading axis over the rows * cols tiles (row-major).
  """
  height, width = image.shape[:2]
  side, halo, rows, cols = tile_grid((height, width), layers, tile)
  # Zero padding makes every crop the same shape (one compiled tile); the
  # padding itself is masked out inside the network (vgg.run_network valid).
  padded = jnp.pad(image, ((halo, rows * side - height + halo),
                           (halo, cols * side - width + halo), (0, 0)))
  crop_side = side + 2 * halo

  def one_tile(padded, index):
    i, j = index // cols, index % cols
    crop = jax.lax.dynamic_slice(padded, (i * side, j * side, 0),
                                 (crop_side, crop_side, 3))
    return tile_fn(crop, (i * side - halo, j * side - halo), (i, j))

  if checkpoint:
    one_tile = jax.checkpoint(one_tile)
  return jax.lax.map(lambda index: one_tile(padded, index),
                     jnp.arange(rows * cols))


def _own_side(layer: str, layers: Sequence[str], tile: int,
              image_hw: tuple[int, int]) -> tuple[int, int]:
  """(t, border): positions a tile owns per side at `layer`, and its halo's."""
  side, halo, _, _ = tile_grid(image_hw, layers, tile)
  step = 2 ** (vgg.layer_block(layer) - 1)
  return side // step, halo // step


def interior(layer: str, layers: Sequence[str], tile: int,
             image_hw: tuple[int, int], feature: jax.Array, ij
             ) -> tuple[jax.Array, jax.Array]:
  """A tile's own part of a crop's feature float32[h, w, C] at `layer`.

  Returns (float32[t, t, C], bool[t, t, 1]: which of its positions lie in the
  image's feature map; the last row and column of tiles overhang it).
  """
  own, border = _own_side(layer, layers, tile, image_hw)
  part = feature[border:border + own, border:border + own]
  rows = jnp.arange(own) + ij[0] * own
  cols = jnp.arange(own) + ij[1] * own
  fh, fw = feature_hw(image_hw, layer)
  inside = (rows < fh)[:, None, None] & (cols < fw)[None, :, None]
  return part, inside


def pad_map(values: jax.Array, layer: str, layers: Sequence[str], tile: int,
            image_hw: tuple[int, int]) -> jax.Array:
  """A per-position map float32[h, w, k] at `layer`, zero-padded to the tiles.

  The result covers every tile's own positions (the overhang is zeros), for
  `own_part`. Done once, outside the loop over tiles.
  """
  own, _ = _own_side(layer, layers, tile, image_hw)
  _, _, rows, cols = tile_grid(image_hw, layers, tile)
  return jnp.pad(values, ((0, rows * own - values.shape[0]),
                          (0, cols * own - values.shape[1]), (0, 0)))


def own_part(padded: jax.Array, layer: str, layers: Sequence[str], tile: int,
             image_hw: tuple[int, int], ij) -> jax.Array:
  """Tile ij's own positions float32[t, t, k] of a `pad_map` result.

  The same positions as `interior`'s part of the tile's features.
  """
  own, _ = _own_side(layer, layers, tile, image_hw)
  return jax.lax.dynamic_slice(padded, (ij[0] * own, ij[1] * own, 0),
                               (own, own, padded.shape[-1]))


def untile(tiles: jax.Array, rows: int, cols: int, hw: tuple[int, int]
           ) -> jax.Array:
  """Per-tile maps float32[rows * cols, t, t, k] (row-major) -> [h, w, k]."""
  _, own, _, k = tiles.shape
  whole = tiles.reshape(rows, cols, own, own, k).transpose(0, 2, 1, 3, 4)
  return whole.reshape(rows * own, cols * own, k)[:hw[0], :hw[1]]
