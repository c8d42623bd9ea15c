r"""Every field of a style-transfer run, with its default.

  python scripts/run.py --config=configs/default.py \
      --config.content=tubingen --config.style=starry_night

Any field can be overridden on the command line: `--config.style_weight=1e3`.
The `sweep` section is for scripts/sweep.py (see configs/starry_sweep.py);
empty, it means one run.
Images are paths or asset names (tubingen, starry_night, the_great_wave, ...);
see `nst_jax/image.py` for the list and `NST_ASSETS_DIR` for offline use.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  # --- Images -----------------------------------------------------------
  config.content = 'tubingen'        # path or asset name
  config.style = 'starry_night'      # path or asset name; 'a,b' blends several
  config.style_blend = ''            # weights of the styles, e.g. '0.7,0.3'; '' = equal
  config.image_size = 512            # long side of the output (and content), px
  config.style_scale = 1.0           # style image long side = style_scale * image_size
  config.preserve_color = ''         # '', 'luminance' (keep the content's colours) or 'histogram'
  config.scales = 1                  # coarse-to-fine: optimise at image_size / scale_ratio**k first
  config.scale_ratio = 2.0           # size ratio between consecutive scales

  # --- Network ----------------------------------------------------------
  config.weights = ''                # ported VGG19 .npz; '' = weights/vgg19.npz (ported on first use)
  config.pooling = 'max'             # 'max' (as trained) or 'avg'

  # --- Loss -------------------------------------------------------------
  config.content_layers = 'block5_conv2'   # comma-separated Keras layer names
  config.style_layers = 'block1_conv1,block2_conv1,block3_conv1,block4_conv1,block5_conv1'
  config.style_layer_weights = ''    # per style layer, comma-separated; '' = 1/len each
  config.normalization = 'seed'      # 'seed' (sums, Gatys) or 'normalized' (size-independent means)
  config.style_loss = 'gram'         # 'gram', 'mean_cov' or 'sliced_wasserstein'
  # Chosen by eye at 256 px (0.3 / 1 / 0.1) and scaled to 512 px: in 'seed'
  # normalisation the content and tv sums grow with the pixel count.
  config.content_weight = 0.075
  config.style_weight = 1.0
  config.tv_weight = 0.05

  # --- Initialisation ---------------------------------------------------
  config.init = 'content'            # 'content', 'noise', 'style' or a path to an image file
  config.seed = 0                    # PRNG seed: noise init (split by purpose)

  # --- Optimiser --------------------------------------------------------
  config.optimizer = 'lbfgs'         # 'lbfgs' (jaxopt), 'optax_lbfgs' or 'adam'
  config.max_iterations = 300        # per scale
  config.history_size = 10           # L-BFGS memory
  config.linesearch = 'zoom'         # jaxopt line search: 'zoom', 'hager-zhang', 'backtracking'
  config.max_linesearch_steps = 20
  config.first_step_fraction = 0.1   # L-BFGS's first step aims to lower the loss by this fraction
  config.learning_rate = 5.0         # Adam only, Caffe pixel units (0-255)

  # --- Output -----------------------------------------------------------
  config.snapshot_every = 50         # iterations per compiled chunk; a PNG after each
  config.resume = ''                 # workdir of an interrupted run to continue

  # --- Sweep (scripts/sweep.py; all '' = one run, for scripts/run.py) ----
  # Values to try, optimised together as one compiled program. Numbers are
  # comma-separated: --config.sweep.style_weight=1e-2,1e-1,1,10. Each
  # style_layer_weights value is itself a comma list; separate values with
  # ';' (quote it in a shell): --config.sweep.style_layer_weights='1,1,1,1,1;1,0,0,0,0'.
  config.sweep = ml_collections.ConfigDict()
  config.sweep.content_weight = ''   # e.g. '0.0025,0.025,0.25'
  config.sweep.style_weight = ''     # e.g. '1e-2,1e-1,1,10'
  config.sweep.tv_weight = ''        # e.g. '0,1,10'
  config.sweep.style_layer_weights = ''  # ';'-separated lists, one number per style layer
  config.sweep.seed = ''             # e.g. '0,1,2,3' (only with init='noise')
  config.sweep.mode = 'grid'         # 'grid': every combination; 'zip': i-th values together
  config.sweep.chunk = 0             # members per compiled call (rounded up to a multiple of the devices); 0 = all
  config.sweep.tile_size = 128       # contact sheet: long side of each tile, px

  return config


# What ':quick' sets: a smoke run of any example in seconds on a CPU.
QUICK = {'image_size': 64, 'max_iterations': 20, 'snapshot_every': 10}


def apply_variant(config: ml_collections.ConfigDict, variant: str,
                  quick: dict | None = None) -> ml_collections.ConfigDict:
  """Applies the variant after a config file's ':' ('' or 'quick').

  Args:
    config: the config to change in place.
    variant: '' (as is) or 'quick' (QUICK, then `quick`'s own overrides).
    quick: extra fields for this config's quick variant.
  """
  if variant == 'quick':
    for key, value in {**QUICK, **(quick or {})}.items():
      config[key] = value
  elif variant:
    raise ValueError(f"unknown config variant {variant!r}: use ':quick' or "
                     'nothing')
  return config
