"""Loss terms as records: each term's statistics, target and distance.

A term is a frozen dataclass (a `Term`) that says, in one place, everything
the evaluator (`evaluate.py`) needs to compute it on any memory path and any
pyramid level; see docs/loss_terms.md for how to add one. For each layer l it
reads, with features f = float32[h, w, C] (n = h w positions):

* `sums`: its statistics of f as sums over positions, so that the tiles of
  memory='tiles' add them (entries named in `gathered` are per-position maps
  float32[h, w, k] instead, put back in the image's order);
* `finish`: the statistic from those sums over all n positions;
* `target` / `blend`: its target from a reference image's statistic, and the
  target of several reference images (the style blend);
* `distance`: the scalar loss of a statistic against the target.

Per layer l (normalisation 'seed' / 'normalized', `LossSpec.normalization`;
_c and _s mark the content and style targets):

* content: sum / mean over (h, w, C) of (F - F_c)^2.
* gram: sum((G - G_s)^2) / (4 C^2 n^2), G = F^T F (C x C) (Gatys et al.
  2015) / mean over C x C of (G / n - G_s)^2.
* mean_cov: mean((Sigma - Sigma_s)^2) + lam mean((mu - mu_s)^2), lam =
  2 mean(mu_s^2), with mu the mean over positions float32[C] and Sigma the
  (population) covariance float32[C, C]; 'seed' divides it by 4. This is NOT
  the Gaussian Wasserstein-2 distance: W2 needs matrix square roots whose
  gradients blow up as eigenvalues approach 0 (and post-ReLU covariances are
  near singular); the Frobenius distance of the two moments is the usual
  practical stand-in. The covariance term is exactly the 'normalized' Gram
  loss of centred features, and lam is the weight a mean error gets, to
  first order, in the Gram loss (G / n = Sigma + mu mu^T, so d(mu mu^T) has
  |.|_F^2 >= 2 |mu|^2 |dmu|^2); without it the mean term would be 1e-3 to
  1e-5 of the covariance term on VGG features and the means would go
  unmatched. The loss is then homogeneous of degree 4 in the features like
  the Gram loss, and on real images (tubingen vs starry night, 96 px, VGG19
  block1-5_conv1) it comes to 0.86-1.06x the Gram loss per layer: weights
  tuned for 'gram' carry over.
* sliced_wasserstein: sliced Wasserstein-2 (squared) between the sets of
  feature vectors over P = `LossSpec.sliced_projections` random unit
  directions D float32[C, P] per layer (drawn once into the targets),
    mean((sort(F D) - Q_s)^2) * mean(Q_s^2),
  sorted along positions, Q_s float32[n, P] the style's sorted projections
  (its quantile functions) resampled to x's n positions; 'seed' divides it
  by 4. The factor mean(Q_s^2) again makes it degree-4 homogeneous like the
  Gram loss: on the real images above it comes to 1.0-1.9x the Gram loss per
  layer (P = 64). The target depends on x's size: it is taken for the
  content image's, which x always matches.
* tv: sum / mean of (dx^2 + dy^2)^1.25 over the image (no VGG layer).

'seed' sums grow with the image size (content and tv with the pixel count),
so weights tuned at 256 px give a different balance at 1024 px; 'normalized'
means do not (G / n is a per-position average of feature products). The
seed's style term equals the normalised one / 4: that constant is folded
into the weights.
"""

import dataclasses
import functools
import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from nst_jax import vgg
from nst_jax.losses import formulas
from nst_jax.losses.tiling import feature_hw


@dataclasses.dataclass(frozen=True)
class Term:
  """A loss term: what it computes per layer, from what, against what.

  Fields (static: a term is part of the jit-static `LossSpec`):
    layers: the VGG19 layers it reads, in network order; () for a term of
      the image's pixels alone.
    normalization: 'seed' or 'normalized' (module docstring).

  Class attributes:
    key: its name in the weights (`weights[key]` scales it,
      `weights[key + '_layers']` its layers), the targets (`targets[key]`)
      and the returned terms.
    reference: where its target comes from, in `compute_targets`: 'content'
      (the content image), 'styles' (each style image, then `blend`), or ''
      (the caller puts targets[key] in the targets itself).
    pyramid: also summed over the style pyramid's coarser levels (with
      targets[key + '_coarse'] and weight weights['style_pyramid']).
    maps: entries of a layer's target that are per-position maps
      float32[h, w, k] of the layer's size (not statistics): every path
      hands `sums` the entries of the same positions as `f`.
    gathered: entries of `sums` that are per-position maps float32[h, w, k]:
      the tiles' are put back in the image's order, not added.
    reference_passes: passes over a tiled reference image; each pass after
      the first gets the previous pass's target (see MeanCov).
  """
  layers: tuple[str, ...] = ()
  normalization: str = 'seed'

  key: ClassVar[str] = ''
  reference: ClassVar[str] = ''
  pyramid: ClassVar[bool] = False
  maps: ClassVar[tuple[str, ...]] = ()
  gathered: ClassVar[tuple[str, ...]] = ()
  reference_passes: ClassVar[int] = 1

  @classmethod
  def from_spec(cls, spec: Any) -> 'Term':
    """The term as a LossSpec configures it (layers: spec.<key>_layers)."""
    return cls(tuple(getattr(spec, f'{cls.key}_layers', ())),
               spec.normalization)

  def prepare(self, layer: str, channels: int, key: jax.Array | None,
              dtype) -> Any:
    """The target a reference image's `sums` get in the first pass."""
    del layer, channels, key, dtype
    return {}

  def sums(self, layer: str, f: jax.Array, inside: jax.Array | float,
           target: Any) -> dict[str, jax.Array]:
    """Statistics of features f float32[h, w, C] as sums over positions.

    `f` is zero at positions outside the image (tiles overhang it) and
    `inside` is 1.0 in it, 0.0 outside (float32[h, w, 1], or the scalar 1.0
    on a whole map); `target` is the layer's target (its `maps` entries cut
    to the same positions).
    """
    raise NotImplementedError

  def reference_sums(self, layer: str, f: jax.Array, inside: jax.Array | float,
                     target: Any) -> dict[str, jax.Array]:
    """`sums` of a reference image, whose target is `prepare`'s."""
    return self.sums(layer, f, inside, target)

  def finish(self, layer: str, sums: Mapping[str, jax.Array], positions: int,
             target: Any) -> Any:
    """The statistic from `sums` added over all `positions` of the map."""
    del layer, positions, target
    return sums

  def statistic(self, layer: str, f: jax.Array, target: Any,
                reference: bool = False) -> Any:
    """The statistic of a whole map f float32[h, w, C] (paths plain, remat)."""
    h, w, _ = f.shape
    sums = (self.reference_sums if reference else self.sums)(layer, f, 1.0,
                                                             target)
    return self.finish(layer, sums, h * w, target)

  def target(self, layer: str, statistic: Any, prepared: Any,
             x_hw: tuple[int, int]) -> Any:
    """The target from a reference image's statistic, for an (H, W) x."""
    del layer, prepared, x_hw
    return statistic

  def blend(self, targets: Sequence[Any], weights: jax.Array) -> Any:
    """The target of several reference images: weighted sum by default."""
    scaled = [jax.tree.map(lambda a, w=w: w * a, t)
              for w, t in zip(weights, targets)]
    return functools.reduce(lambda a, b: jax.tree.map(operator.add, a, b),
                            scaled)

  def distance(self, layer: str, statistic: Any, target: Any,
               positions: int) -> jax.Array:
    """The layer's loss, a scalar, of a statistic over `positions`."""
    raise NotImplementedError

  def loss(self, x: jax.Array, statistics: Mapping[str, Any],
           targets: Mapping[str, Any], layer_weights: jax.Array) -> jax.Array:
    """The term at one level, unweighted: sum over layers of weight x distance.

    x is the (level's) image float32[H, W, 3]; statistics and targets are
    {layer: ...}. A term of pixels alone overrides this.
    """
    return sum(layer_weights[i] * self.distance(
        layer, statistics[layer], targets[layer],
        math.prod(feature_hw(x.shape[:2], layer)))
               for i, layer in enumerate(self.layers))


@dataclasses.dataclass(frozen=True)
class Content(Term):
  """Squared distance of the features to the content image's, per position.

  Target per layer: {'features': float32[h, w, C]}, a map.
  """
  key = 'content'
  reference = 'content'
  maps = ('features',)
  gathered = ('features',)

  def sums(self, layer, f, inside, target):
    # Outside the image both f and the cut target are zeros: nothing added.
    return {'sq': jnp.sum(jnp.square(f - target['features']))}

  def reference_sums(self, layer, f, inside, target):
    return {'features': f}

  def distance(self, layer, statistic, target, positions):
    sq = statistic['sq']
    return sq / target['features'].size if self.normalization == 'normalized' \
        else sq


@dataclasses.dataclass(frozen=True)
class Gram(Term):
  """Gram matrices (Gatys et al.). Target per layer: float32[C, C], G / n
  under 'normalized' (else G); styles blend by weighted sum."""
  key = 'style'
  reference = 'styles'
  pyramid = True

  def sums(self, layer, f, inside, target):
    return {'gram': formulas.gram_matrix(f)}

  def finish(self, layer, sums, positions, target):
    gram = sums['gram']
    return gram / positions if self.normalization == 'normalized' else gram

  def distance(self, layer, statistic, target, positions):
    if self.normalization == 'normalized':
      return jnp.mean(jnp.square(statistic - target))
    c = statistic.shape[-1]
    diff = statistic - target
    return jnp.sum(jnp.square(diff)) / (4.0 * c ** 2 * positions ** 2)


@dataclasses.dataclass(frozen=True)
class MeanCov(Term):
  """Mean and covariance matching. Target per layer: {'mean': float32[C],
  'cov': float32[C, C]}.

  Summed in tiles as the first and second moments of the features less the
  target's mean: plain sums, and the covariance's E[dd^T] - E[d] E[d]^T
  cancels only as much as x's mean is off the target's (the very mismatch
  the loss drives down), not as much as the means are large against the
  spread (deep VGG layers), as E[ff^T] - mu mu^T would. A tiled reference
  image takes two passes: its mean, then the moments about it.
  """
  key = 'style'
  reference = 'styles'
  pyramid = True
  reference_passes = 2

  def prepare(self, layer, channels, key, dtype):
    return {'mean': jnp.zeros((channels,), dtype)}

  def sums(self, layer, f, inside, target):
    d = ((f - target['mean']) * inside).reshape(-1, f.shape[-1])
    return {'first': jnp.sum(d, axis=0),
            'second': jnp.matmul(d.T, d, precision=formulas.HIGHEST)}

  def finish(self, layer, sums, positions, target):
    offset = sums['first'] / positions
    return {'mean': target['mean'] + offset,
            'cov': sums['second'] / positions - jnp.outer(offset, offset)}

  def statistic(self, layer, f, target, reference=False):
    # A whole map is at hand: centre it on its own mean (two passes).
    return dict(zip(('mean', 'cov'), formulas.feature_mean_cov(f)))

  def blend(self, targets, weights):
    """The moments of the mixture of the styles' feature distributions.

    mu = sum_i w_i mu_i and E[f f^T] = sum_i w_i E_i[f f^T], with Sigma =
    E[f f^T] - mu mu^T in the equivalent, cancellation-free form
    sum_i w_i (Sigma_i + (mu_i - mu)(mu_i - mu)^T) (law of total
    covariance; equal when the weights sum to 1).
    """
    mean = sum(w * t['mean'] for w, t in zip(weights, targets))
    cov = sum(w * (t['cov'] + jnp.outer(t['mean'] - mean, t['mean'] - mean))
              for w, t in zip(weights, targets))
    return {'mean': mean, 'cov': cov}

  def distance(self, layer, statistic, target, positions):
    # The first-order weight of a mean error in the Gram loss (docstring).
    mean_weight = 2.0 * jnp.mean(jnp.square(target['mean']))
    loss = (jnp.mean(jnp.square(statistic['cov'] - target['cov'])) +
            mean_weight * jnp.mean(jnp.square(statistic['mean'] -
                                              target['mean'])))
    return loss if self.normalization == 'normalized' else loss / 4.0


@dataclasses.dataclass(frozen=True)
class SlicedWasserstein(Term):
  """Sliced Wasserstein-2 over random projections. Target per layer:
  {'directions': float32[C, P] unit columns, 'quantiles': float32[n, P]}.

  Layer l's directions are random_directions(fold_in(key, its index in
  vgg.CONV_LAYERS)), so they do not depend on which other layers are chosen.
  Its statistic, the sorted projections, is not a sum: the projections are
  gathered whole and sorted (invariant to the order of positions; the
  gradient is that of the sorted order, a permutation, defined almost
  everywhere). Styles blend by averaging quantile functions: the
  Wasserstein-2 barycenter of the 1-D projected distributions.
  """
  projections: int = 64

  key = 'style'
  reference = 'styles'
  pyramid = True
  gathered = ('proj',)

  @classmethod
  def from_spec(cls, spec):
    return dataclasses.replace(super().from_spec(spec),
                               projections=spec.sliced_projections)

  def prepare(self, layer, channels, key, dtype):
    if key is None:
      raise ValueError("style_loss='sliced_wasserstein' needs compute_targets("
                       '..., key=...) for its random projections')
    return {'directions': formulas.random_directions(
        jax.random.fold_in(key, vgg.CONV_LAYERS.index(layer)), channels,
        self.projections, dtype)}

  def sums(self, layer, f, inside, target):
    h, w, c = f.shape
    proj = jnp.matmul(f.reshape(h * w, c), target['directions'],
                      precision=formulas.HIGHEST)
    return {'proj': proj.reshape(h, w, -1)}

  def finish(self, layer, sums, positions, target):
    # Row-major order before the (stable) sort, so exact ties break alike
    # on every path and the gradient is the same.
    return jnp.sort(sums['proj'].reshape(positions, -1), axis=0)

  def target(self, layer, statistic, prepared, x_hw):
    h, w = feature_hw(x_hw, layer)
    return {'directions': prepared['directions'],
            'quantiles': formulas.resample_quantiles(statistic, h * w)}

  def blend(self, targets, weights):
    return {'directions': targets[0]['directions'],
            'quantiles': sum(w * t['quantiles']
                             for w, t in zip(weights, targets))}

  def distance(self, layer, statistic, target, positions):
    quantiles = target['quantiles']
    if statistic.shape != quantiles.shape:
      raise ValueError(
          f'sliced_wasserstein target has {quantiles.shape[0]} positions but '
          f'the features have {statistic.shape[0]}: compute the targets with '
          'a content image of the size of the image being optimised')
    # The style's mean squared projection: makes the loss degree-4
    # homogeneous in the features like the Gram loss (module docstring).
    scale = jnp.mean(jnp.square(quantiles))
    loss = jnp.mean(jnp.square(statistic - quantiles)) * scale
    return loss if self.normalization == 'normalized' else loss / 4.0


@dataclasses.dataclass(frozen=True)
class TotalVariation(Term):
  """Total variation of the image's pixels (no VGG layer, no target)."""
  key = 'tv'

  def loss(self, x, statistics, targets, layer_weights):
    return formulas.total_variation_loss(x, self.normalization)


# The style losses a LossSpec may choose (LossSpec.style_loss): each a term
# with key 'style'. The content and TV terms are in every LossSpec.
STYLE_TERMS: dict[str, type[Term]] = {
    'gram': Gram,
    'mean_cov': MeanCov,
    'sliced_wasserstein': SlicedWasserstein,
}
