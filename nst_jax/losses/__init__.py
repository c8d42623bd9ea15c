"""Style-transfer losses: content, style and total variation (Gatys et al.).

The package, one concern per module:

* formulas.py: the maths (Gram matrix, mean and covariance, sorted
  projections, quantile resampling, total variation, halving);
* terms.py: the loss terms as records (`Term`): content, the style losses
  ('gram', 'mean_cov', 'sliced_wasserstein') and TV, each stating its
  statistics as sums over positions, its target and its distance;
* tiling.py: the tile grid, halo and crops of memory='tiles';
* evaluate.py: `LossSpec`, `compute_targets` and `combined_loss`, one
  evaluator for every term on every memory path ('plain', 'remat', 'tiles':
  the same loss and gradient, see `LossSpec.memory`; nst_jax.memory picks
  one) and pyramid level;
* guided_style.py: spatial control, the style loss per region of the
  picture (`GuidedStyle`) and pixels held to the photo (`PhotoHold`).

All functions are pure and jit-friendly. Feature maps are post-ReLU VGG19
activations float32[h, w, C]; the image `x` being optimised is in VGG's Caffe
space (BGR, 0-255 minus the mean pixel, see `vgg.preprocess`). The combined
loss takes its weights as traced arguments (they can be vmapped for weight
sweeps) and returns each term for logging.
"""

from nst_jax.losses.evaluate import (MEMORY_PATHS, NORMALIZATIONS,
                                     STYLE_LOSSES, LossSpec, combined_loss,
                                     compute_targets)
from nst_jax.losses.formulas import (feature_mean_cov, gram_matrix, halve,
                                     random_directions, resample_quantiles,
                                     sorted_projections, style_pyramid_levels,
                                     total_variation_loss)
from nst_jax.losses.guided_style import (GuidedStyle, PhotoHold, layer_masks,
                                         photo_target, region_targets)
from nst_jax.losses.terms import (STYLE_TERMS, Content, Gram, MeanCov,
                                  SlicedWasserstein, Term, TotalVariation)
from nst_jax.losses.tiling import (DEFAULT_TILE, feature_hw, tile_grid,
                                   tile_halo, tile_side)
