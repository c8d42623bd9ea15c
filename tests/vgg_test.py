"""Tests for nst_jax.vgg: shapes, names, stopping early, pre/deprocessing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import vgg


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
