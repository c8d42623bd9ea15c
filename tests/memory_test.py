"""Tests for the tiles of the memory-saving paths and nst_jax.memory.

That 'remat' and 'tiles' give the plain path's loss and gradient for every
term is tests/losses_test.py's `test_every_term_is_exact_on_every_path`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import losses
from nst_jax import memory
from nst_jax import vgg
from nst_jax.errors import UserError

_SHALLOW = (('block3_conv2',), ('block1_conv1', 'block2_conv1', 'block3_conv1'))
_DEEP = (('block5_conv2',), ('block1_conv1', 'block2_conv1', 'block3_conv1',
                             'block4_conv1', 'block5_conv1'))


def _assert_close_to_scale(got, want, tolerance=1e-5):
  """max |got - want| <= tolerance * max |want|: float32 sums in another order."""
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=0,
                             atol=tolerance * float(jnp.max(jnp.abs(want))))


def test_tiled_targets_equal_plain_targets(random_params):
  content = vgg.preprocess(jax.random.uniform(jax.random.key(1), (45, 38, 3)))
  style = vgg.preprocess(jax.random.uniform(jax.random.key(2), (41, 50, 3)))
  for style_loss in losses.STYLE_LOSSES:
    spec = lambda memory: losses.LossSpec(
        *_SHALLOW, style_loss=style_loss, normalization='normalized',
        sliced_projections=8, memory=memory, tile=16, style_levels=2)
    plain = losses.compute_targets(random_params, content, [style], None,
                                   spec('plain'), key=jax.random.key(3))
    tiled = losses.compute_targets(random_params, content, [style], None,
                                   spec('tiles'), key=jax.random.key(3))
    jax.tree.map(_assert_close_to_scale, tiled, plain)


def _tiled_features(params, image, layers, pooling='max', tile=8):
  """vgg.extract_features computed in tiles: the content targets on 'tiles'."""
  spec = losses.LossSpec(layers, ('block1_conv1',), pooling, memory='tiles',
                         tile=tile)
  targets = losses.compute_targets(params, image, [image], None, spec)
  return {layer: t['features'] for layer, t in targets['content'].items()}


def test_tiled_features_equal_whole_image_features(random_params):
  layers = ('block1_conv2', 'block2_conv1', 'block4_conv1')
  image = vgg.preprocess(jax.random.uniform(jax.random.key(4), (43, 29, 3)))
  whole = vgg.extract_features(random_params, image, layers, 'avg')
  tiled = _tiled_features(random_params, image, layers, 'avg')
  for layer in layers:
    assert tiled[layer].shape == whole[layer].shape
    np.testing.assert_allclose(tiled[layer], whole[layer], rtol=1e-5, atol=1e-4)


def test_halo_too_small_would_be_wrong(random_params, monkeypatch):
  """The check above can fail: with a halo one stride short, tiles differ."""
  layers = ('block2_conv2',)
  image = vgg.preprocess(jax.random.uniform(jax.random.key(5), (24, 24, 3)))
  whole = vgg.extract_features(random_params, image, layers)
  halo = losses.tile_halo(layers)
  assert halo == 6  # 2 convs, pool (1), 2 convs: 3 positions at stride 2.
  monkeypatch.setattr(losses.tiling, 'tile_halo', lambda layers: halo - 2)
  tiled = _tiled_features(random_params, image, layers)
  assert not np.allclose(tiled['block2_conv2'], whole['block2_conv2'],
                         rtol=1e-3, atol=1e-3)


def test_tile_geometry():
  assert vgg.min_image_side(_DEEP[0] + _DEEP[1]) == 16
  assert losses.tile_halo(_DEEP[0] + _DEEP[1]) == 96
  assert losses.tile_halo(('block5_conv1',)) == 80
  assert losses.tile_halo(('block1_conv1',)) == 1
  assert losses.tile_side(('block5_conv1',), 0) == losses.DEFAULT_TILE
  assert losses.tile_side(('block5_conv1',), 100) == 112  # up to a multiple of 16
  assert losses.tile_grid((100, 75), ('block5_conv1',), 32) == (32, 80, 4, 3)


def test_relative_cost_counts_repeated_forward_passes_and_halos():
  layers = (('block4_conv2',), ('block1_conv1', 'block5_conv1'))
  plain = losses.LossSpec(*layers)
  remat = losses.LossSpec(*layers, memory='remat')
  tiles = losses.LossSpec(*layers, memory='tiles')
  assert plain.relative_cost((1536, 2048)) == 1.0
  assert remat.relative_cost((1536, 2048)) == pytest.approx(4 / 3)
  # 3 x 4 tiles of 512 px, each computed on a 672 px crop (halo 80).
  assert tiles.relative_cost((1536, 2048)) == pytest.approx(
      4 / 3 * 12 * 672 ** 2 / (1536 * 2048))
  assert 2.2 < tiles.relative_cost((1536, 2048)) < 2.4
  # Per pixel, the same wherever the tiles divide the image; a small image
  # is one small crop and pays for a whole halo around it.
  assert tiles.relative_cost((3072, 4096)) == pytest.approx(
      tiles.relative_cost((1536, 2048)))
  assert tiles.relative_cost((96, 128)) > tiles.relative_cost((1536, 2048))
  assert tiles.describe_memory((1536, 2048)) == (
      'tiles (3x4 tiles of 512 px, halo 80 px)')
  assert plain.describe_memory((96, 128)) == 'plain (the whole network)'


def test_loss_spec_rejects_an_unknown_memory_path():
  with pytest.raises(ValueError, match='memory'):
    losses.LossSpec(('block1_conv1',), (), memory='swap')
  with pytest.raises(ValueError, match='tile'):
    losses.LossSpec(('block1_conv1',), (), memory='tiles', tile=-1)


def test_sweep_vmap_over_members_works_with_tiles(random_params):
  spec = losses.LossSpec(*_SHALLOW, memory='tiles', tile=8)
  content = vgg.preprocess(jax.random.uniform(jax.random.key(6), (20, 16, 3)))
  targets = losses.compute_targets(random_params, content, [content], None, spec)
  weights = {'content': jnp.array([1.0, 2.0]), 'style': jnp.array([1.0, 1.0]),
             'tv': jnp.array([0.0, 0.0]), 'content_layers': jnp.ones((2, 1)),
             'style_layers': jnp.ones((2, 3))}
  xs = jnp.stack([content + 1.0, content + 1.0])
  one = lambda x, w: losses.combined_loss(x, random_params, targets, w, spec)[0]
  totals = jax.vmap(one)(xs, weights)
  single = one(xs[0], jax.tree.map(lambda a: a[0], weights))
  np.testing.assert_allclose(totals[0], single, rtol=1e-5)
  assert float(totals[1]) > float(totals[0])


# --- nst_jax.memory

_LAYERS = _DEEP[0] + _DEEP[1]


def test_available_memory_is_positive():
  available = memory.available_memory_bytes()
  assert available is None or available > 2**20


def test_estimates_order_the_paths_and_follow_the_tile():
  hw = (3072, 4096)
  plain, remat, tiles = (memory.estimate_memory_bytes(hw, _LAYERS, 10, 1, m, 512)
                         for m in losses.MEMORY_PATHS)
  # Calibrated on XLA:CPU, where remat's checkpoints save nothing (its
  # scheduler recomputes early) and cost their own buffers.
  assert remat > plain > 3 * tiles
  small = memory.estimate_memory_bytes(hw, _LAYERS, 10, 1, 'tiles', 128)
  assert small < tiles
  two = memory.estimate_memory_bytes(hw, _LAYERS, 10, 1, 'plain', members=2)
  assert 1.9 * (plain - memory._FIXED_BYTES) < two - memory._FIXED_BYTES


def test_choose_auto_goes_plain_then_remat_then_tiles(monkeypatch):
  hw = (1536, 2048)
  need = lambda m, t=0: memory.estimate_memory_bytes(hw, _LAYERS, 10, 1, m, t)
  choose = lambda available, requested='auto', tile=0: memory.choose_memory_path(
      hw, _LAYERS, 10, 1, 1, requested, tile, available=available)
  roomy = int(need('plain') / memory.MARGIN) + 1
  assert choose(roomy) == ('plain', 0)
  # With the CPU calibration remat needs more than plain, so 'auto' skips it;
  # where its checkpoints do save memory, it comes between the two.
  assert choose(roomy - 2**20) == ('tiles', 1024)
  monkeypatch.setitem(memory._PER_ACTIVATION, 'remat',
                      0.5 * memory._PER_ACTIVATION['plain'])
  assert choose(int(need('remat') / memory.MARGIN) + 1) == ('remat', 0)
  assert choose(int(need('tiles', 512) / memory.MARGIN) + 1) == ('tiles', 512)
  # A forced choice is kept, whatever would be faster.
  assert choose(roomy, 'tiles', 256) == ('tiles', 256)
  assert choose(roomy, 'remat') == ('remat', 0)
  assert choose(None) == ('plain', 0)


def test_refusal_names_the_margin_and_a_size_that_fits():
  hw = (3072, 4096)
  with pytest.raises(UserError) as error:
    memory.choose_memory_path(hw, _LAYERS, 10, 1, 1, 'plain', 0,
                              available=8 * 2**30, value=4096)
  text = str(error.value)
  assert 'config.image_size=4096' in text and "memory='plain'" in text
  assert f'{memory.MARGIN:.0%} of the 8.0 GiB' in text
  fits = int(text.split('config.image_size <= ')[1].split(',')[0].split()[0])
  assert 0 < fits < 4096
  fit_hw = (round(3072 * fits / 4096), fits)
  usable = memory.MARGIN * 8 * 2**30
  assert memory.estimate_memory_bytes(fit_hw, _LAYERS, 10, 1, 'plain') <= usable
  with pytest.raises(UserError, match='config.memory'):
    memory.choose_memory_path(hw, _LAYERS, 10, 1, 1, 'swap', 0, available=None)
  # Nothing fits in 100 MiB, not even the smallest tile; 'auto' tried every
  # tile, so the message does not send the user back to it.
  with pytest.raises(UserError, match="memory='tiles'") as error:
    memory.choose_memory_path(hw, _LAYERS, 10, 1, 1, 'auto', 0,
                              available=100 * 2**20)
  assert "config.memory='auto'" not in str(error.value)


def test_budget_caps_the_memory_auto_plans_for():
  hw = (1536, 2048)
  choose = lambda available, budget, requested='auto': memory.choose_memory_path(
      hw, _LAYERS, 10, 1, 1, requested, 0, available=available, budget=budget,
      value=2048)
  roomy = 64 * 2**30
  assert choose(roomy, 0.0) == ('plain', 0)
  # 6 GiB of budget on a roomy machine: tiles whose estimate fits 85% of it.
  path, side = choose(roomy, 6.0)
  assert path == 'tiles'
  assert memory.estimate_memory_bytes(hw, _LAYERS, 10, 1, 'tiles', side) <= (
      memory.MARGIN * 6 * 2**30)
  # A budget above what the machine has does not raise the limit.
  assert choose(8 * 2**30, 100.0) == choose(8 * 2**30, 0.0)
  # Unknown free memory (None): the budget alone decides.
  assert choose(None, 6.0) == (path, side)
  # A refusal under a budget names it, and raising it as a fix.
  with pytest.raises(UserError) as error:
    choose(roomy, 6.0, 'plain')
  text = str(error.value)
  assert '6.0 GiB of config.memory_budget' in text
  assert 'raise config.memory_budget' in text
  with pytest.raises(UserError) as error:
    choose(6 * 2**30, 0.0, 'plain')
  assert '6.0 GiB available' in str(error.value)
  assert 'memory_budget' not in str(error.value)


# Device peaks that the GPU model (nst_jax/memory.py, fitted on 512, 2048,
# 4096 and 8192 px with 768 px tiles) had not seen: one H200, jax 0.11.2,
# scripts/gpu_check.sh on 2026-11-28, default loss and its style pyramid
# (docs/memory.md, On a GPU). (height, width), path, tile, device peak MiB.
_DEFAULT_LAYERS = ('block1_conv1', 'block2_conv1', 'block3_conv1',
                   'block4_conv1', 'block4_conv2', 'block5_conv1')
_HELD_OUT_GPU_PEAKS = [((96, 128), 'plain', 0, 319.0),
                       ((192, 256), 'plain', 0, 410.0),
                       ((6144, 8192), 'tiles', 1024, 40.67 * 1024)]


@pytest.mark.parametrize('hw, path, tile, peak_mib', _HELD_OUT_GPU_PEAKS)
def test_gpu_estimate_covers_device_peaks_it_was_not_fitted_on(hw, path, tile,
                                                              peak_mib):
  levels = losses.style_pyramid_levels(hw, 256)
  estimate = memory.estimate_memory_bytes(
      hw, _DEFAULT_LAYERS, 10, 1, path, tile, style_levels=levels,
      platform='gpu') / 2**20
  # 'auto' must never plan a run that the card cannot hold, and should not
  # refuse one it can by much.
  assert 1.0 <= estimate / peak_mib <= 1.15


def test_auto_plans_with_the_gpu_model_on_a_gpu(monkeypatch):
  hw, levels = (3072, 4096), 5
  h100_share = int(0.75 * 81559 * 2**20)  # What JAX takes of an 80 GB H100.
  choose = lambda: memory.choose_memory_path(
      hw, _DEFAULT_LAYERS, 10, available=h100_share, style_levels=levels)
  assert choose()[0] == 'tiles'  # The CPU model: 56 GiB of 'plain' is too much.
  monkeypatch.setattr(memory.jax, 'default_backend', lambda: 'gpu')
  assert choose() == ('plain', 0)
