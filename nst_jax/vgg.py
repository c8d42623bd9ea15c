"""VGG19 feature extractor (Simonyan & Zisserman 2014) in JAX, Keras layer names.

The network is the 16 convolution layers of VGG19 with their ReLUs and the four
pools between blocks; the classifier is never needed for style transfer. Layer
names follow Keras (`block1_conv1` ... `block5_conv4`) and every feature is the
post-ReLU activation of that convolution.

Images enter the network in the Caffe convention the ImageNet weights were
trained with: BGR channels, 0-255, minus the mean pixel [103.939, 116.779,
123.68] (BGR). `preprocess` and `deprocess` convert to and from the RGB floats
in [0, 1] that the rest of nst_jax works in.

Params are a plain pytree passed in explicitly (never closed over: XLA would
embed 80 MB of constants and compile for minutes):
  {'block1_conv1': {'kernel': float32[3, 3, 3, 64], 'bias': float32[64]}, ...}
with kernels in Flax's HWIO layout. `prepare_params` adds to each layer the
kernel of its input gradient ('kernel_t'), which keeps gradients fast inside
loops (see `conv3x3`); without it, it is derived on the fly.
"""

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

# (channels, convolutions) of each of the five blocks.
_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))

CONV_LAYERS: tuple[str, ...] = tuple(
    f'block{b}_conv{i}'
    for b, (_, n) in enumerate(_BLOCKS, start=1)
    for i in range(1, n + 1))


def _conv_shapes() -> dict[str, tuple[int, int, int, int]]:
  shapes, in_channels = {}, 3
  for b, (channels, n) in enumerate(_BLOCKS, start=1):
    for i in range(1, n + 1):
      shapes[f'block{b}_conv{i}'] = (3, 3, in_channels, channels)
      in_channels = channels
  return shapes


# Kernel shape (HWIO) of each convolution; its bias has shape (O,).
CONV_SHAPES: dict[str, tuple[int, int, int, int]] = _conv_shapes()

# Mean pixel of the ImageNet training set in BGR order, 0-255 (Caffe VGG).
VGG_MEAN_BGR = (103.939, 116.779, 123.68)

POOLINGS = ('max', 'avg')

# Arithmetic of the convolutions (forward and both gradients): 'float32', or
# 'bfloat16' inputs and kernels with float32 accumulation and results, at
# twice a GPU's float32 (TF32) matmul rate and half the operand traffic.
# Everything else (bias, ReLU, pools, the statistics and losses) is float32.
PRECISIONS = ('float32', 'bfloat16')


def layer_block(layer: str) -> int:
  """The block number (1-5) of a Keras layer name such as 'block3_conv2'."""
  return int(layer[len('block')])


def unknown_layers(layers: Sequence[str]) -> list[str]:
  """The names in `layers` that are not VGG19 convolution layers."""
  return [layer for layer in layers if layer not in CONV_SHAPES]


def min_image_side(layers: Sequence[str]) -> int:
  """Smallest image side (pixels) whose features reach every layer in `layers`.

  A layer of block b sits behind b - 1 pools that each halve the side (rounding
  down), so the input needs at least 2**(b - 1) pixels for it to keep one.
  """
  return 2 ** (max(layer_block(layer) for layer in layers) - 1)


def preprocess(image: jax.Array) -> jax.Array:
  """RGB float32[..., H, W, 3] in [0, 1] -> Caffe BGR, 0-255, mean-subtracted."""
  return image[..., ::-1] * 255.0 - jnp.asarray(VGG_MEAN_BGR, image.dtype)


def deprocess(x: jax.Array) -> jax.Array:
  """Inverse of `preprocess`: Caffe BGR minus mean -> RGB in [0, 1] (unclipped)."""
  return ((x + jnp.asarray(VGG_MEAN_BGR, x.dtype)) / 255.0)[..., ::-1]


def _conv(x: jax.Array, kernel: jax.Array,
          precision: str = 'float32') -> jax.Array:
  if precision == 'bfloat16':
    return jax.lax.conv_general_dilated(
        x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16), (1, 1), 'SAME',
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
        preferred_element_type=jnp.float32)
  return jax.lax.conv_general_dilated(
      x, kernel, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def input_grad_kernel(kernel: jax.Array) -> jax.Array:
  """The HWIO kernel whose 'SAME' convolution is a 3x3 conv's input gradient.

  It is `kernel` flipped in space with its in/out channels swapped.
  """
  return jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def conv3x3(x: jax.Array, kernel: jax.Array, kernel_t: jax.Array,
            precision: str = 'float32') -> jax.Array:
  """A 3x3 'SAME' convolution (NHWC, HWIO) whose input gradient uses `kernel_t`.

  `precision` (one of PRECISIONS, static) is the arithmetic of the
  convolution and of both its gradients; the result is float32 either way.

  Autodiff would write the input gradient as a convolution with a transposed
  kernel layout (HWOI). Inside a loop (our optimiser's `while_loop`) XLA:CPU
  runs that layout with a naive kernel, about 6x slower than the canonical
  one, which made every evaluation cost twice what it costs outside a loop.
  Passing the gradient's kernel in canonical layout, computed once outside
  the loop (`prepare_params`), avoids it on every backend.
  """
  return _conv(x, kernel, precision)


def _conv3x3_fwd(x, kernel, kernel_t, precision):
  # The backward pass needs the input and kernel_t only (see _kernel_grad).
  return _conv(x, kernel, precision), (x, kernel_t)


def _kernel_grad(x: jax.Array, g: jax.Array,
                 precision: str = 'float32') -> jax.Array:
  """The gradient of sum(g * conv3x3(x, kernel)) w.r.t. the kernel: [3, 3, I, O].

  dK[a, b, i, o] = sum over n, y, x of pad(x)[n, y + a, x + b, i] g[n, y, x, o]:
  itself a convolution, of x (images as features, channels as the batch)
  with g as the kernel. Written out rather than taken from `jax.vjp`, which
  would trace the convolution's linearisation at every conv of every
  traced loss evaluation (98 traces, most of a warm start's tracing).
  """
  if precision == 'bfloat16':
    return jax.lax.conv_general_dilated(
        x.astype(jnp.bfloat16), g.astype(jnp.bfloat16), (1, 1),
        ((1, 1), (1, 1)), dimension_numbers=('CHWN', 'IHWO', 'HWNC'),
        preferred_element_type=jnp.float32)
  return jax.lax.conv_general_dilated(
      x, g, (1, 1), ((1, 1), (1, 1)),
      dimension_numbers=('CHWN', 'IHWO', 'HWNC'))


def _conv3x3_bwd(precision, residuals, g):
  x, kernel_t = residuals
  # The kernel gradient is exact too (and removed by XLA when unused, as it
  # is when only the image is optimised).
  return (_conv(g, kernel_t, precision), _kernel_grad(x, g, precision),
          jnp.zeros_like(kernel_t))


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)


@jax.jit
def prepare_params(params: Mapping) -> dict:
  """Adds each layer's 'kernel_t' (see `conv3x3`); call once, outside loops.

  Jitted: one program for all 16 layers instead of two eager ones per kernel
  shape, which a GPU would compile (or read from the cache) one by one.
  """
  return {name: {**leaves, 'kernel_t': input_grad_kernel(leaves['kernel'])}
          for name, leaves in params.items()}


def pool2x2(x: jax.Array, pooling: str = 'max') -> jax.Array:
  """2x2 stride-2 'VALID' pooling: float32[..., H, W, C] -> [..., H//2, W//2, C].

  Written as a reshape and a max (or mean) over the two window axes rather
  than `reduce_window`: on GPUs the gradient of a windowed max lowers to
  select-and-scatter, whose scattered adds are not deterministic, while a
  plain max's gradient is an elementwise compare-and-select (tied maxima
  share the gradient equally; after a ReLU ties are zeros, whose gradient
  the ReLU stops anyway). An odd last row or column is dropped (floor, as
  Caffe and Keras pool).
  """
  *lead, h, w, c = x.shape
  x = x[..., :h // 2 * 2, :w // 2 * 2, :]
  x = x.reshape(*lead, h // 2, 2, w // 2, 2, c)
  if pooling == 'max':
    return jnp.max(x, axis=(-4, -2))
  return jnp.mean(x, axis=(-4, -2))


def conv_relu(leaves: Mapping[str, jax.Array], x: jax.Array,
              precision: str = 'float32') -> jax.Array:
  """One VGG layer on float32[(N,) H, W, Cin]: 3x3 'SAME' conv, bias, ReLU;
  the conv in `precision` (PRECISIONS)."""
  kernel = leaves['kernel']
  kernel_t = leaves.get('kernel_t')
  if kernel_t is None:
    kernel_t = input_grad_kernel(kernel)
  batched = x.ndim == 4
  y = conv3x3(x if batched else x[None], kernel, kernel_t, precision)
  return jax.nn.relu((y if batched else y[0]) + leaves['bias'])


def block_layers(layers: Sequence[str]) -> dict[int, tuple[str, ...]]:
  """{block: its conv layers to run} to reach the deepest of `layers`."""
  deepest = max(CONV_LAYERS.index(layer) for layer in layers)
  blocks: dict[int, tuple[str, ...]] = {}
  for name in CONV_LAYERS[:deepest + 1]:
    block = layer_block(name)
    blocks[block] = blocks.get(block, ()) + (name,)
  return blocks


def _inside_image(valid, level: int, hw: tuple[int, int]) -> jax.Array:
  """bool[h, w, 1]: the positions of a crop's level-`level` map in the image."""
  (row0, col0), (height, width) = valid
  step = 2 ** level
  rows = jnp.arange(hw[0]) + row0 // step
  cols = jnp.arange(hw[1]) + col0 // step
  inside_rows = (rows >= 0) & (rows < height // step)
  inside_cols = (cols >= 0) & (cols < width // step)
  return (inside_rows[:, None] & inside_cols[None, :])[..., None]


def run_network(params: Mapping, x: jax.Array, layers: Sequence[str],
                pooling: str = 'max', *,
                summarize: Callable[[str, jax.Array], Any] | None = None,
                remat: bool = False, valid=None,
                precision: str = 'float32') -> dict[str, Any]:
  """VGG19 up to the deepest of `layers`, each requested feature summarised.

  Args:
    params: the VGG19 params pytree (module docstring).
    x: Caffe-preprocessed float32[(N,) H, W, 3].
    layers: Keras layer names; static.
    pooling: 'max' or 'avg'; static.
    summarize: (layer, float32[(N,) h, w, C] feature) -> any pytree, applied
      to each requested feature as soon as it exists (default: the feature
      itself). With `remat` it runs inside the block's checkpoint, so when the
      summary is smaller than the feature (a Gram matrix) the backward pass
      keeps only the summary.
    remat: checkpoint each VGG block: the backward pass keeps the block inputs
      and summaries only, and recomputes the block's convolutions.
    valid: None, or ((row0, col0), (height, width)) when `x` is a crop of a
      larger image: (row0, col0) (ints, may be traced or negative, multiples
      of 2**(deepest block - 1)) is where the crop's first pixel lies in the
      image and (height, width) (static) is the image's size. Every conv
      input is then zeroed outside the image, as 'SAME' padding does at the
      image's border, so the crop computes what the whole image computes
      wherever the crop's own border is far enough (see losses.tile_halo).
    precision: the convolutions' arithmetic, one of PRECISIONS; static.
      Features and summaries are float32 either way.

  Returns:
    {layer: summarize(layer, feature)} for every layer in `layers`.
  """
  wanted = set(layers)
  summarize = summarize or (lambda layer, feature: feature)

  def run_block(block, names, block_params, x):
    if block > 1:
      x = pool2x2(x, pooling)
    out = {}
    for name in names:
      if valid is not None:
        x = jnp.where(_inside_image(valid, block - 1, x.shape[-3:-1]), x, 0.0)
      x = conv_relu(block_params[name], x, precision)
      if name in wanted:
        out[name] = summarize(name, x)
    return x, out

  results = {}
  for block, names in block_layers(layers).items():
    fn = functools.partial(run_block, block, names)
    if remat:
      # Nothing inside a block is saved: its backward recomputes the block
      # from its input, so the peak holds one block's activations, not all.
      fn = jax.checkpoint(fn, policy=jax.checkpoint_policies.nothing_saveable)
    x, out = fn({name: params[name] for name in names}, x)
    results.update(out)
  return results


def extract_features(params: Mapping, image: jax.Array,
                     layers: Sequence[str], pooling: str = 'max',
                     precision: str = 'float32') -> dict[str, jax.Array]:
  """VGG19 features of a preprocessed image.

  Args:
    params: the VGG19 params pytree (see module docstring); layers deeper than
      the deepest requested one may be absent.
    image: Caffe-preprocessed float32[H, W, 3] or float32[N, H, W, 3]
      (see `preprocess`).
    layers: Keras layer names; static.
    pooling: 'max' or 'avg'; static.
    precision: the convolutions' arithmetic, one of PRECISIONS; static.

  Returns:
    {layer: float32[(N,) h, w, C]}: post-ReLU activations, batched like `image`.
  """
  bad = unknown_layers(layers)
  if bad:
    raise ValueError(f'unknown VGG19 layer(s) {bad}; choose from {list(CONV_LAYERS)}')
  if pooling not in POOLINGS:
    raise ValueError(f"pooling={pooling!r}: use 'max' or 'avg'")
  if precision not in PRECISIONS:
    raise ValueError(f'precision={precision!r}: use one of {list(PRECISIONS)}')
  return run_network(params, image, layers, pooling, precision=precision)


def init_random_params(key: jax.Array) -> dict:
  """Random He-initialised VGG19 params, for tests that need no real weights."""
  params = {}
  for name, key in zip(CONV_LAYERS, jax.random.split(key, len(CONV_LAYERS))):
    shape = CONV_SHAPES[name]
    fan_in = shape[0] * shape[1] * shape[2]
    params[name] = {
        'kernel': jax.random.normal(key, shape, jnp.float32) * jnp.sqrt(2.0 / fan_in),
        'bias': jnp.zeros((shape[-1],), jnp.float32),
    }
  return params
