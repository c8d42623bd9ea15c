"""Regions of a picture from a label image: soft masks, names, the config mapping.

Spatial control (Gatys et al. 2017, *Controlling Perceptual Factors in Neural
Style Transfer*, arXiv 1611.07865, section 4): a label image the shape of the
photo paints each region in one flat colour; each region gets its own style,
or keeps the photo. This module turns label images into masks and checks the
config that maps them; `nst_jax.guided` takes the style statistics under the
masks.

Label images. Any Pillow mode: RGB, palette, gray, 1-bit, 16-bit gray.
* Colour maps: the regions are the image's *dominant* colours. Colours are
  grouped (greedily, most frequent first) with every colour within
  `COLOUR_TOLERANCE` of a group's first colour, which absorbs the noise of a
  JPEG-saved map; a group is a region when its *core* (its pixels whose 5x5
  neighbourhood is all in the group) covers at least `MIN_REGION_SHARE`
  (0.5%) of the pixels. Why the core: the intermediate colours of an
  anti-aliased border, and JPEG's ringing along it, lie in bands a few
  pixels wide, which have no core, yet on a small map (32-100 px) they hold
  2-3% of the pixels. Why 0.5%: a region worth a style is larger; 0.5% of a
  256x192 map is a 16x16 px patch, one position of block5's features. A
  label image needs >= 50% of its pixels within `SNAP_DISTANCE` of a region
  colour (`MIN_FLAT_SHARE`): the photos and paintings of shared/images have
  at most 32% (32-256 px). So a gray mask whose feathered edge covers more
  than half of it is refused: give it as a PNG's alpha, or feather it with
  `feather_masks`. Every pixel gets a soft
  membership: a pixel within `SNAP_DISTANCE` of a region colour belongs to it
  wholly (flat areas of a JPEG); any other lies between regions (an
  anti-aliased or feathered edge) and is shared between the two nearest
  region colours a and b by its projection onto the segment [a, b]:
  t = clip((c - a) . (b - a) / |b - a|^2, 0, 1), weights 1 - t and t. A
  white/black (gray or 1-bit) mask is two regions 'white' and 'black'.
* Alpha maps: an image with transparency, whose pixels are at least 0.5%
  opaque (alpha >= 128) and 0.5% transparent, has two regions 'opaque'
  (weight alpha / 255) and 'transparent' (1 - alpha / 255); its colours are
  ignored. Otherwise it is composited over white, like `image.load_image`.
Masks are float32[H, W, R] in [0, 1] summing to 1 at every pixel: every pixel
is shared among the regions, none is left out.

Names. A region is named after its colour the way Pillow names colours
(`PIL.ImageColor`: 'blue', 'white', 'lime'), else '#rrggbb'. Configs name
regions by any colour `PIL.ImageColor.getrgb` reads ('blue', '#0000ff',
'rgb(0,0,255)'), or 'opaque'/'transparent'; the nearest region colour within
`COLOUR_TOLERANCE` is taken (and named when it is not the same colour).

Sizes. The label map is resized with its image (`resize_masks`, to the size
the photo or painting has in the run, at every scale); its aspect ratio must be
within 1% of the image's. `feather_masks` blurs the masks (a Gaussian,
sigma = radius / 2) so that a hard border becomes a ramp ~2 radius wide.
`losses.layer_masks` gives each VGG layer the masks at its feature size.

The config (fields proposed for `spec.default_config`):
  content_regions = ''  the photo's label image ('' = no regions)
  style_regions = ''    'STYLE=PATH, ...': label images of config.style entries
  region_styles = ''    'COLOUR=STYLE, COLOUR=STYLE@STYLE_COLOUR, COLOUR=none'
  region_feather = 0.0  px at image_size
`parse_style_regions`, `parse_region_styles` and the `check_*` functions
append one line per problem to `problems`, as spec.py does (the parsers then
return None or skip the item, the checks False); `read_label_map` raises
UserError, which the caller adds as a problem.
"""

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageColor, ImageOps

from nst_jax import image as image_lib
from nst_jax import losses
from nst_jax.errors import UserError

# A colour group is a region when its core covers this share of the image.
MIN_REGION_SHARE = 0.005
# Colours closer than this (Euclidean, 0-255 RGB) are one region; configured
# colours match a region colour this close. JPEG (quality >= 50) moves flat
# areas of a label map by a few units and edges by tens: distinct label
# colours should differ by more than this.
COLOUR_TOLERANCE = 48.0
# A region's core: its pixels whose (2 r + 1)^2 neighbourhood is all its own.
CORE_RADIUS = 2
# Pixels this close to a region colour belong to it wholly (JPEG noise of flat
# areas); farther ones are shared (anti-aliased or feathered edges).
SNAP_DISTANCE = 12.0
# More regions than this is a photo or a gradient, not a label map.
MAX_REGIONS = 16
# A label image has at least this share of its pixels within SNAP_DISTANCE of
# a region colour (the rest are edges); photos have far less.
MIN_FLAT_SHARE = 0.5
# Distinct colours seeded as groups before giving up (a photo has thousands).
_MAX_GROUPS = 4 * MAX_REGIONS
# Aspect ratios of a label image and its image may differ by this much.
MAX_ASPECT_DIFFERENCE = 0.01
# A region is empty at a layer when its weight there is under this many
# feature positions: its guided statistics would rest on a sliver.
MIN_LAYER_POSITIONS = 0.5
ALPHA_REGIONS = ('opaque', 'transparent')
NONE = 'none'  # region_styles value: the region keeps the photo.

_ALPHA_MODES = ('RGBA', 'RGBa', 'LA', 'La', 'PA')


@dataclasses.dataclass(frozen=True, eq=False)
class LabelMap:
  """A decoded label image at its own size.

  Attributes:
    path: the file.
    names: region names, most frequent first ('blue', '#1e90ff'), or
      ('opaque', 'transparent') for an alpha mask.
    colours: each region's RGB colour (0-255), or None for alpha regions.
    masks: float32[H, W, R] soft memberships in [0, 1], summing to 1.
  """
  path: Path
  names: tuple[str, ...]
  colours: tuple[tuple[int, int, int] | None, ...]
  masks: np.ndarray

  @property
  def hw(self) -> tuple[int, int]:
    return self.masks.shape[:2]

  @property
  def shares(self) -> np.ndarray:
    """float32[R]: each region's share of the pixels (sums to 1)."""
    return self.masks.mean(axis=(0, 1))


class RegionStyle(NamedTuple):
  """What one region of the photo becomes (`parse_region_styles`)."""
  region: int  # index of the photo's region (the masks' last axis)
  style: int | None  # index into config.style's entries; None: keeps the photo
  style_region: int | None  # region of that style's label map; None: whole


# --- Reading label images -----------------------------------------------------


def _colour_names() -> dict[tuple[int, int, int], str]:
  """Pillow's colour names by RGB; of synonyms the shortest, then first A-Z."""
  names: dict[tuple[int, int, int], str] = {}
  for name in sorted(ImageColor.colormap, key=lambda n: (len(n), n)):
    names.setdefault(ImageColor.getrgb(name)[:3], name)
  return names


_COLOUR_NAMES = _colour_names()


def colour_name(rgb: Sequence[int]) -> str:
  """'blue' for (0, 0, 255): Pillow's name for the colour, else '#rrggbb'."""
  rgb = tuple(int(v) for v in rgb)
  return _COLOUR_NAMES.get(rgb, '#{:02x}{:02x}{:02x}'.format(*rgb))


def _alpha(path: Path) -> np.ndarray | None:
  """The alpha channel uint8[H, W] (EXIF-oriented), or None if it has none."""
  with Image.open(path) as image:
    if image.mode not in _ALPHA_MODES and 'transparency' not in image.info:
      return None
    image = ImageOps.exif_transpose(image)
    if image.mode == 'La':
      image = image.convert('LA')  # Pillow has no direct La -> RGBA.
    return np.asarray(image.convert('RGBA'))[:, :, 3]


def _groups(colours: np.ndarray, counts: np.ndarray) -> np.ndarray:
  """Greedy colour groups: int[U] group of each distinct colour, -1 = none.

  Most frequent colour first; each seeds a group of the unassigned colours
  within COLOUR_TOLERANCE. Stops when the unassigned pixels could no longer
  make a region, or after _MAX_GROUPS groups.
  """
  group = np.full(len(colours), -1)
  order = np.argsort(-counts, kind='stable')
  free_pixels, groups = counts.sum(), 0
  for seed in order:
    if groups >= _MAX_GROUPS or free_pixels < MIN_REGION_SHARE * counts.sum():
      break
    if group[seed] >= 0:
      continue
    near = np.linalg.norm(colours - colours[seed], axis=1) <= COLOUR_TOLERANCE
    near &= group < 0
    group[near] = seed
    free_pixels -= counts[near].sum()
    groups += 1
  return group


def _core(labels: np.ndarray) -> dict[int, int]:
  """{group: pixels whose CORE_RADIUS neighbourhood is all that group}."""
  height, width = labels.shape
  r = CORE_RADIUS
  # Edge padding: a region along the picture's border keeps its core there.
  padded = np.pad(labels, r, mode='edge')
  same = np.ones(labels.shape, bool)
  for dy in range(2 * r + 1):
    for dx in range(2 * r + 1):
      same &= padded[dy:dy + height, dx:dx + width] == labels
  found, counts = np.unique(labels[same & (labels >= 0)], return_counts=True)
  return dict(zip(found.tolist(), counts.tolist()))


def _memberships(colours: np.ndarray, centres: np.ndarray) -> np.ndarray:
  """float32[U, R] memberships of float colours [U, 3] (module docstring)."""
  r = len(centres)
  if r == 1:
    return np.ones((len(colours), 1), np.float32)
  distance = np.linalg.norm(colours[:, None] - centres[None], axis=2)  # [U, R]
  nearest = np.argsort(distance, axis=1, kind='stable')[:, :2]
  a, b = centres[nearest[:, 0]], centres[nearest[:, 1]]
  t = np.clip(np.sum((colours - a) * (b - a), axis=1)
              / np.sum((b - a) ** 2, axis=1), 0.0, 1.0)
  t[distance[np.arange(len(colours)), nearest[:, 0]] <= SNAP_DISTANCE] = 0.0
  out = np.zeros((len(colours), r), np.float32)
  rows = np.arange(len(colours))
  out[rows, nearest[:, 0]] = 1.0 - t
  out[rows, nearest[:, 1]] += t
  return out


def read_label_map(path: str | os.PathLike[str]) -> LabelMap:
  """Decodes a label image into regions and soft masks at its own size.

  See the module docstring for how regions are found. Raises UserError for a
  file `image.load_image` refuses, for an image with no region, and for one
  that is not a label image (over MAX_REGIONS regions, or under
  MIN_FLAT_SHARE of the pixels wholly in one: a photo or a gradient).
  """
  path = Path(path).expanduser()
  rgb = image_lib.load_image(path)  # Validates; transparency over white.
  alpha = _alpha(path)
  pixels = rgb.shape[0] * rgb.shape[1]
  if alpha is not None:
    opaque = np.count_nonzero(alpha >= 128)
    if min(opaque, pixels - opaque) >= MIN_REGION_SHARE * pixels:
      weight = alpha.astype(np.float32) / 255.0
      masks = np.stack([weight, 1.0 - weight], axis=-1)
      return LabelMap(path, ALPHA_REGIONS, (None, None), masks)
  # One int per colour: np.unique on rows is ~10x slower.
  codes = np.round(rgb * 255.0).astype(np.int32) @ np.array([65536, 256, 1])
  packed, inverse, counts = np.unique(codes.reshape(-1), return_inverse=True,
                                      return_counts=True)
  colours = np.stack([packed >> 16, (packed >> 8) & 255, packed & 255], -1)
  colours = colours.astype(np.float32)
  group = _groups(colours, counts)
  core = _core(group[inverse.reshape(rgb.shape[:2])])
  # Regions by their core, not their pixel count: a long anti-aliased border
  # (or JPEG's ringing along it) can hold 2-3% of a small map's pixels in one
  # intermediate colour group, but only as a band a few pixels wide.
  seeds = [s for s in np.unique(group[group >= 0])
           if core.get(s, 0) >= MIN_REGION_SHARE * pixels]
  seeds.sort(key=lambda s: -counts[group == s].sum())
  if not seeds:
    raise UserError(
        f'{path} ({rgb.shape[1]}x{rgb.shape[0]} px) has no region: no colour '
        f'fills {MIN_REGION_SHARE:.1%} of it with patches at least '
        f'{2 * CORE_RADIUS + 1} px wide; paint the regions in flat colours')
  centres = colours[seeds]
  # Distance to the segments between region colours would excuse too much:
  # a gray photo lies along its black-white segment.
  near = np.linalg.norm(colours[:, None] - centres[None], axis=2).min(axis=1)
  flat = counts[near <= SNAP_DISTANCE].sum() / pixels
  if len(seeds) > MAX_REGIONS or flat < MIN_FLAT_SHARE:
    raise UserError(
        f'{path} is not a label image: its {len(seeds)} main colours cover '
        f'{flat:.0%} of it (a label image has <= {MAX_REGIONS}, covering >= '
        f'{MIN_FLAT_SHARE:.0%}); paint each region in one flat colour (e.g. '
        "blue sky, white town), or give a soft mask as a PNG's transparency "
        'or with config.region_feather')
  masks = _memberships(colours, centres)[inverse]
  masks = masks.reshape(*rgb.shape[:2], len(seeds))
  rgbs = tuple(tuple(int(v) for v in colours[s]) for s in seeds)
  return LabelMap(path, tuple(colour_name(c) for c in rgbs), rgbs, masks)


# --- Sizes --------------------------------------------------------------------


def resize_masks(masks: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  """float32[H, W, R] masks resized to float32[*hw, R], still summing to 1.

  Shrinking averages the area each output pixel covers (Pillow's box
  filter); enlarging interpolates bilinearly. Both weigh with weights >= 0
  that sum to 1, so memberships stay in [0, 1] and shared (Lanczos would
  overshoot); the sums are renormalised against rounding.
  """
  masks = np.asarray(masks, np.float32)
  if masks.shape[:2] == tuple(hw):
    return masks
  size = (hw[1], hw[0])
  shrink = hw[0] * hw[1] <= masks.shape[0] * masks.shape[1]
  resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
  out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(
      masks[:, :, r])).resize(size, resample))
                  for r in range(masks.shape[2])], axis=-1)
  out = np.clip(out, 0.0, 1.0)
  return (out / np.maximum(out.sum(axis=-1, keepdims=True), 1e-12)
          ).astype(np.float32)


def masks_at(label_map: LabelMap, hw: tuple[int, int], feather: float = 0.0
             ) -> np.ndarray:
  """float32[*hw, R]: the label map's masks at an image size, feathered.

  `feather`: the radius in px at this size (config.region_feather is in px
  at image_size: a coarser scale s passes it times hw / image_size).
  """
  return feather_masks(resize_masks(label_map.masks, hw), feather)


def feather_masks(masks: np.ndarray, radius: float) -> np.ndarray:
  """float32[H, W, R] masks blurred by a Gaussian of sigma = radius / 2 px.

  A hard border becomes a ramp from 2% to 98% over 2 * radius px (+-2 sigma),
  so that the styles meet without a seam. Borders of the picture repeat the
  edge pixel, which keeps the masks summing to 1 (renormalised against
  rounding). radius <= 0 returns the masks unchanged.
  """
  masks = np.asarray(masks, np.float32)
  if radius <= 0:
    return masks
  sigma = radius / 2.0
  half = max(1, math.ceil(3.0 * sigma))
  taps = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
  taps /= taps.sum()
  out = masks.astype(np.float64)
  for axis in (0, 1):
    pad = [(0, 0)] * 3
    pad[axis] = (half, half)
    padded = np.pad(out, pad, mode='edge')
    n = out.shape[axis]
    out = sum(weight * np.take(padded, np.arange(i, i + n), axis=axis)
              for i, weight in enumerate(taps))
  out /= out.sum(axis=-1, keepdims=True)
  return out.astype(np.float32)


def check_aspect(field: str, label_hw: tuple[int, int], image_field: str,
                 image_hw: tuple[int, int], problems: list[str],
                 name: str = '') -> bool:
  """Appends a problem when the label image's aspect ratio differs > 1%.

  Compare against the image file's own (height, width), not its size in the
  run: rounding a small run size's short side would move the ratio.
  """
  label_ratio = label_hw[1] / label_hw[0]
  image_ratio = image_hw[1] / image_hw[0]
  difference = abs(label_ratio / image_ratio - 1.0)
  if difference <= MAX_ASPECT_DIFFERENCE:
    return True
  of = f' ({name!r})' if name else ''  # which of several styles
  problems.append(
      f'config.{field}{of} is {label_hw[1]}x{label_hw[0]} px (width/height '
      f'{label_ratio:.3f}) but config.{image_field}{of} is {image_hw[1]}x'
      f'{image_hw[0]} ({image_ratio:.3f}), {difference:.1%} apart (over '
      f'{MAX_ASPECT_DIFFERENCE:.0%}): draw the label image over the '
      f'{image_field} image, or crop it to a {image_hw[1]}x{image_hw[0]} shape')
  return False


def check_nonempty(field: str, label_map: LabelMap, masks: np.ndarray,
                   regions: Sequence[int], layers: Sequence[str],
                   image_size: int, problems: list[str]) -> bool:
  """Appends a problem for each of `regions` too small at the deepest layer.

  Args:
    field: the config field of the label image, for the message.
    label_map: its regions' names.
    masks: float32[H, W, R], resized to the smallest size the image has in
      the run (first scale, coarsest pyramid level).
    regions: the region indices used by the mapping.
    layers: the style layers; the deepest one decides.
    image_size: the run's long side there, px, for the message.
  """
  deepest = max(layers, key=lambda layer: int(layer[len('block')]))
  weight = np.asarray(losses.layer_masks(masks, (deepest,))[deepest]).sum(axis=(0, 1))
  hw = losses.feature_hw(masks.shape[:2], deepest)
  ok = True
  for r in regions:
    if weight[r] < MIN_LAYER_POSITIONS:
      ok = False
      problems.append(
          f'config.{field}: region {label_map.names[r]!r} covers '
          f'{weight[r]:.2f} of the {hw[0] * hw[1]} positions of {deepest} '
          f'({hw[1]}x{hw[0]}) at {image_size} px, under '
          f'{MIN_LAYER_POSITIONS}: paint it larger, raise image_size, or '
          'drop the deepest style layer')
  return ok


# --- The mapping --------------------------------------------------------------


def _items(text: str) -> list[str]:
  return [item.strip() for item in str(text).split(',') if item.strip()]


def style_index(name: str, styles: Sequence[str]) -> int | None:
  """The config.style entry `name` names: the entry itself or its file stem."""
  for i, entry in enumerate(styles):
    if name == entry.strip():
      return i
  stems = [i for i, entry in enumerate(styles)
           if Path(entry.strip()).stem.lower() == name.lower()]
  return stems[0] if len(stems) == 1 else None


def find_region(label_map: LabelMap, colour: str) -> tuple[int | None, str]:
  """(index, '') of the region `colour` names, or (None, why not) or a note.

  `colour`: what `PIL.ImageColor.getrgb` reads, or 'opaque'/'transparent'.
  The nearest region colour within COLOUR_TOLERANCE; when it is not the same
  colour the second item says which it took ('blue matched #0205fb').
  """
  key = colour.strip().lower()
  listing = ', '.join(label_map.names)
  if label_map.colours[0] is None:
    if key in label_map.names:
      return label_map.names.index(key), ''
    return None, (f"{label_map.path.name} is an alpha mask: its regions are "
                  "'opaque' and 'transparent'")
  if key in ALPHA_REGIONS:
    return None, (f'{label_map.path.name} has no transparency: its regions '
                  f'are {listing}')
  try:
    rgb = np.asarray(ImageColor.getrgb(key)[:3], np.float32)
  except ValueError:
    return None, (f'{colour!r} is not a colour: use a name or hex code '
                  f"Pillow knows ('blue', '#0000ff'); {label_map.path.name}'s "
                  f'regions are {listing}')
  distance = np.linalg.norm(np.asarray(label_map.colours, np.float32) - rgb,
                            axis=1)
  nearest = int(np.argmin(distance))
  if distance[nearest] > COLOUR_TOLERANCE:
    return None, (f'{label_map.path.name} has no region of colour {colour!r} '
                  f'{tuple(int(v) for v in rgb)}: its regions are {listing}')
  note = ('' if distance[nearest] == 0 else
          f'{colour} matched {label_map.names[nearest]}')
  return nearest, note


def parse_style_regions(text: str, styles: Sequence[str],
                        problems: list[str]) -> dict[int, str]:
  """config.style_regions 'STYLE=PATH, ...' -> {style index: path text}."""
  out: dict[int, str] = {}
  for item in _items(text):
    name, sep, path = (part.strip() for part in item.partition('='))
    if not sep or not name or not path:
      problems.append(
          f'config.style_regions={text!r}: {item!r} is not STYLE=PATH; write '
          "e.g. 'starry_night=configs/regions/starry_night_sky.png'")
      continue
    index = style_index(name, styles)
    if index is None:
      problems.append(
          f'config.style_regions={text!r}: {name!r} is not one of config.style '
          f'({", ".join(styles)}): name one of those')
    elif index in out:
      problems.append(f'config.style_regions={text!r} gives {name!r} two label '
                      'images: give one')
    else:
      out[index] = path
  return out


def parse_region_styles(text: str, content: LabelMap, styles: Sequence[str],
                        style_maps: Mapping[int, LabelMap],
                        problems: list[str], notes: list[str] | None = None
                        ) -> tuple[RegionStyle, ...] | None:
  """config.region_styles -> one RegionStyle per region of `content`.

  Args:
    text: 'COLOUR=STYLE, COLOUR=STYLE@STYLE_COLOUR, COLOUR=none', comma-
      separated; COLOUR names a region of config.content_regions (see
      `find_region`), STYLE an entry of config.style (as written, or its
      file stem), STYLE_COLOUR a region of that style's label map.
    content: the photo's label map.
    styles: config.style's entries.
    style_maps: {style index: its label map} (config.style_regions).
    problems: one line appended per problem.
    notes: if given, 'blue matched #0205fb' lines for approximate colours.

  Returns:
    The RegionStyles in the order of content's regions, every region mapped
    exactly once, or None when a problem was found.
  """
  field = f'config.region_styles={text!r}'
  before = len(problems)
  mapped: dict[int, RegionStyle] = {}
  # Regions named by an item, good or bad, and whether every item could be
  # read: an unreadable one may be meant for any region, so unmapped regions
  # are reported only when all were read (one line per mistake).
  claimed, readable = set(), True
  for item in _items(text):
    colour, sep, target = (part.strip() for part in item.partition('='))
    if not sep or not colour or not target:
      problems.append(f"{field}: {item!r} is not COLOUR=STYLE; write e.g. "
                      "'blue=starry_night, white=none'")
      readable = False
      continue
    region, why = find_region(content, colour)
    if region is None:
      problems.append(f'{field}: {why} (config.content_regions)')
      readable = False
      continue
    if why and notes is not None:
      notes.append(why)
    if region in claimed:
      problems.append(f'{field} maps region {content.names[region]!r} twice: '
                      'map each region once')
      continue
    claimed.add(region)
    if target.lower() == NONE:
      mapped[region] = RegionStyle(region, None, None)
      continue
    name, at, style_colour = (part.strip() for part in target.partition('@'))
    index = style_index(name, styles)
    if index is None:
      problems.append(
          f'{field}: {name!r} is not one of config.style ({", ".join(styles)}):'
          f" map {colour!r} to one of those, to 'none' (keeps the photo), or "
          f'add {name!r} to config.style')
      continue
    style_region = None
    if at:
      if index not in style_maps:
        problems.append(
            f'{field}: {name!r}@{style_colour!r} names a region but {name!r} '
            f"has no label image: add '{name}=PATH' to config.style_regions, "
            f"or write '{colour}={name}' to use the whole painting")
        continue
      style_region, why = find_region(style_maps[index], style_colour)
      if style_region is None:
        problems.append(f'{field}: {why} (config.style_regions, {name!r})')
        continue
      if why and notes is not None:
        notes.append(f'{name}@{why}')
    mapped[region] = RegionStyle(region, index, style_region)
  for r, region_name in enumerate(content.names):
    if readable and r not in claimed:
      problems.append(
          f'{field} does not map region {region_name!r} ({content.shares[r]:.0%}'
          f' of config.content_regions): add {region_name}=STYLE, or '
          f'{region_name}=none to keep the photo there')
  if len(problems) > before:
    return None
  return tuple(mapped[r] for r in range(len(content.names)))


def describe(content: LabelMap, shares: Sequence[float],
             mapping: Sequence[RegionStyle], styles: Sequence[str],
             style_maps: Mapping[int, LabelMap]) -> str:
  """The log line: 'regions: blue 33% -> starry_night, white 67% -> none ...'.

  `shares`: each region's share of the picture at the run's size.
  """
  parts = []
  for entry in mapping:
    name = f'{content.names[entry.region]} {shares[entry.region]:.0%}'
    if entry.style is None:
      parts.append(f'{name} -> none (keeps the photo)')
      continue
    target = Path(styles[entry.style]).stem
    if entry.style_region is not None:
      target += f"'s {style_maps[entry.style].names[entry.style_region]}"
    parts.append(f'{name} -> {target}')
  return 'regions: ' + ', '.join(parts)


# --- The run's plan ---------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Plan:
  """The checked regions of a run (`plan`), for spec.RunSpec.regions.

  Attributes:
    content: the photo's label map.
    style_maps: {style index: its label map} (config.style_regions).
    mapping: one RegionStyle per region of `content`, in its order.
    feather: config.region_feather, px at image_size.
    image_size: the run's long side, px (the feather scales with it).
  """
  content: LabelMap
  style_maps: dict[int, LabelMap]
  mapping: tuple[RegionStyle, ...]
  feather: float
  image_size: int

  @property
  def styled(self) -> tuple[RegionStyle, ...]:
    """The regions with a style, in the masks' order."""
    return tuple(m for m in self.mapping if m.style is not None)

  @property
  def kept(self) -> tuple[int, ...]:
    """Indices of the regions that keep the photo."""
    return tuple(m.region for m in self.mapping if m.style is None)

  def sources(self) -> tuple[tuple[int, int], ...]:
    """Per styled region (style index, region of that style's masks)."""
    return tuple((m.style, m.style_region or 0) for m in self.styled)

  def masks(self, hw: tuple[int, int]) -> np.ndarray:
    """float32[*hw, R] the photo's regions at a size, feathered."""
    return masks_at(self.content, hw,
                    self.feather * max(hw) / self.image_size)

  def style_masks(self, style: int, hw: tuple[int, int]) -> np.ndarray:
    """float32[*hw, Q] a style image's regions at its size (ones: whole)."""
    if style not in self.style_maps:
      return np.ones((*hw, 1), np.float32)
    return masks_at(self.style_maps[style], hw,
                    self.feather * max(hw) / self.image_size)


def _read(field: str, path_text: str, problems: list[str]
          ) -> LabelMap | None:
  try:
    return read_label_map(path_text)
  except UserError as e:
    problems.append(f'config.{field}: {e}')
    return None


def plan(config, styles: Sequence[str], content_hws: Sequence[tuple[int, int]],
         style_hws: Sequence[tuple[int, int] | None],
         smallest_hw: tuple[int, int] | None, layers: Sequence[str],
         problems: list[str], notes: list[str] | None = None) -> Plan | None:
  """Checks config's region fields; the run's Plan, or None (no regions, or
  a problem appended, one line each).

  Args:
    config: the run's config (content_regions, style_regions,
      region_styles, region_feather, image_size).
    styles: config.style's entries.
    content_hws: (H, W) of each content image file (for the aspect check).
    style_hws: (H, W) of each style image file, None where not found.
    smallest_hw: the picture's smallest size in the run (first scale,
      coarsest pyramid level), for the empty-region check; None: unknown.
    layers: the style layers.
  """
  content_text = str(config.content_regions).strip()
  if not content_text:
    for field in ('style_regions', 'region_styles'):
      if str(config.get(field)).strip():
        problems.append(f'config.{field} is set but config.content_regions is '
                        "empty: give the photo's label image too (or clear "
                        f'config.{field})')
    return None
  before = len(problems)
  content = _read('content_regions', content_text, problems)
  if content is not None:
    for hw in dict.fromkeys(content_hws):
      check_aspect('content_regions', content.hw, 'content', hw, problems)
  style_maps = {}
  for index, path in parse_style_regions(config.style_regions, styles,
                                         problems).items():
    label = _read('style_regions', path, problems)
    if label is None:
      continue
    style_maps[index] = label
    if style_hws[index]:
      check_aspect('style_regions', label.hw, 'style', style_hws[index],
                   problems, name=styles[index])
  if content is None:
    return None
  if not str(config.region_styles).strip():
    problems.append(
        f'config.region_styles is empty but config.content_regions has regions '
        f'{", ".join(content.names)}: map each, e.g. '
        f"'{content.names[0]}=STYLE' or '{content.names[0]}=none'")
    return None
  mapping = parse_region_styles(config.region_styles, content, styles,
                                style_maps, problems, notes)
  if mapping is None or len(problems) > before:
    return None
  if all(m.style is None for m in mapping):
    problems.append(f'config.region_styles={config.region_styles!r} keeps '
                    'every region as the photo: map one to a style')
    return None
  result = Plan(content, style_maps, mapping, float(config.region_feather),
                int(config.image_size))
  if smallest_hw is not None:
    masks = result.masks(smallest_hw)
    check_nonempty('content_regions', content, masks,
                   [m.region for m in result.styled], layers, max(smallest_hw),
                   problems)
    for m in result.styled:
      if m.style_region is None or not style_hws[m.style]:
        continue
      # The style image at the same coarsest size as the picture (roughly).
      hw = image_lib.resized_hw(style_hws[m.style], max(smallest_hw))
      check_nonempty('style_regions', style_maps[m.style],
                     result.style_masks(m.style, hw), [m.style_region],
                     layers, max(hw), problems)
  return None if len(problems) > before else result
