"""The temporal consistency loss of video style transfer, and its measure.

Ruder, Dosovitskiy & Brox (GCPR 2016; IJCV 2018, arXiv 1708.04538): frame x
of the output should match its stylised neighbour warped along the optical
flow, where the flow is trusted (confidence c, `flow.confidence`):

  temporal_loss = (1 / D) sum c (x - warped_neighbour)^2,  D = H W 3.

With neighbours at several distances j in J (nearest first), each pixel is
constrained by the nearest neighbour that sees it only:
c_long_j = max(c_j - sum_{k in J, k < j} c_k, 0) (`long_term_confidences`).
`temporal_error` is the paper's measure of flicker, for comparisons.
`Temporal` is the loss as a term record (`losses.Term`, see
docs/loss_terms.md) for `LossSpec(extra_terms=(Temporal(),))`: each frame's
neighbours and confidences are its per-member targets, so the frames of a
pass are members of one compiled program.

Pure functions of arrays: jit, vmap and grad work; pixel values in [0, 1].
"""

import dataclasses

import jax
import jax.numpy as jnp

from nst_jax import flow as flow_lib
from nst_jax import losses


def temporal_loss(x: jax.Array, warped: jax.Array,
                  confidence: jax.Array) -> jax.Array:
  """(1 / D) sum c (x - warped)^2, D = H W C: the short-term temporal loss.

  Args:
    x: float[H, W, C], the frame being optimised.
    warped: float[H, W, C], a stylised neighbour warped into x's pixels
      (`flow.warp`); a constant target.
    confidence: float[H, W] in [0, 1], 0 where the warp is not trusted.

  Returns:
    float32 scalar.
  """
  x = jnp.asarray(x, jnp.float32)
  difference = x - jnp.asarray(warped, jnp.float32)
  weighted = jnp.asarray(confidence, jnp.float32)[..., None] * difference ** 2
  return jnp.sum(weighted) / x.size


def long_term_confidences(confidences: jax.Array) -> jax.Array:
  """Confidences of neighbours at gaps j, each pixel kept by the nearest only.

  Args:
    confidences: float[J, ...], the confidence c_j of each neighbour, ordered
      nearest first (gaps increasing, as `flow.FlowSettings.gaps`).

  Returns:
    float32[J, ...]: c_long_j = max(c_j - sum_{k < j} c_k, 0); the first is
    c_1 unchanged.
  """
  confidences = jnp.asarray(confidences, jnp.float32)
  nearer = jnp.cumsum(confidences, axis=0) - confidences
  return jnp.maximum(confidences - nearer, 0.0)


def long_term_temporal_loss(x: jax.Array, warped: jax.Array,
                            confidences: jax.Array) -> jax.Array:
  """sum_j temporal_loss(x, warped_j, c_long_j): the long-term temporal loss.

  Args:
    x: float[H, W, C], the frame being optimised.
    warped: float[J, H, W, C], its neighbours at gaps j (nearest first),
      warped into x's pixels.
    confidences: float[J, H, W], their confidences before combining.

  Returns:
    float32 scalar.
  """
  weights = long_term_confidences(confidences)
  return jnp.sum(jax.vmap(temporal_loss, in_axes=(None, 0, 0))(
      x, warped, weights))


def temporal_error(frames: jax.Array, backward_flow: jax.Array,
                   confidence: jax.Array) -> jax.Array:
  """Mean masked squared difference of each frame and its warped predecessor.

  For each frame t >= 1, sum c (x_t - warp(x_{t-1}, w_t))^2 / (C sum c) (the
  mean over the confident pixels and channels), averaged over the frames
  whose confidence is not all 0; lower is steadier.

  Args:
    frames: float[T, H, W, C] in [0, 1], e.g. a stylised clip.
    backward_flow: float[T, H, W, 2], flow from frame t to frame t - 1 of the
      input clip (`flow.ClipFlow.backward[g]` for the gap j = 1); entry 0 is
      ignored.
    confidence: float[T, H, W], its confidence (`backward_confidence[g]`).

  Returns:
    float32 scalar, in (pixel value)^2; NaN when no frame has a confident
    pixel (e.g. T = 1).
  """
  frames = jnp.asarray(frames, jnp.float32)
  warped = jax.vmap(flow_lib.warp)(frames[:-1], backward_flow[1:])
  mask = jnp.asarray(confidence, jnp.float32)[1:, ..., None]
  weight = jnp.sum(mask, axis=(1, 2, 3)) * frames.shape[-1]
  squared = jnp.sum(mask * (frames[1:] - warped) ** 2, axis=(1, 2, 3))
  counted = weight > 0
  per_frame = jnp.where(counted, squared / jnp.where(counted, weight, 1.0), 0.0)
  return jnp.sum(per_frame) / jnp.sum(counted)


@dataclasses.dataclass(frozen=True)
class Temporal(losses.Term):
  """The long-term temporal loss as a term of pixels (no VGG layer).

  Target (`targets['temporal']`, put there by the caller, one per member):
    {'warped': float32[J, H, W, 3], the stylised neighbours at gaps j
     (nearest first) warped into this frame, Caffe space like x;
     'confidence': float32[J, H, W] in [0, 1], their confidences before
     combining (`long_term_confidences` combines them nearest-first)}.
  A neighbour that does not exist has confidence 0. With `sides` = 2 the J
  entries are S J: the neighbours before the frame (nearest first), then
  those after it, each side combined nearest-first on its own and the two
  sides' losses added.

  The loss is `long_term_temporal_loss` of x and the neighbours in [0, 1]
  pixel units (Caffe values / 255, the channel order does not matter), so
  weights['temporal'] times it is the mean confident squared change of a
  pixel value, the unit of `temporal_error`. It reads the pixels alone, so
  every memory path (plain, remat, tiles) computes it alike.
  """
  sides: int = 1

  key = 'temporal'

  def loss(self, x, statistics, targets, layer_weights):
    warped = jnp.split(targets['warped'] / 255.0, self.sides)
    confidence = jnp.split(targets['confidence'], self.sides)
    return sum(long_term_temporal_loss(x / 255.0, w, c)
               for w, c in zip(warped, confidence))
