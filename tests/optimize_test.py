"""Tests for nst_jax.optimize: descent, chunking, evaluation counts, NaN stops."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import losses
from nst_jax import optimize
from nst_jax import vgg

SIZE = 32


@pytest.fixture(scope='module')
def problem(random_params):
  spec = losses.LossSpec(('block3_conv1',), ('block1_conv1', 'block2_conv1',
                                             'block3_conv1'))
  k1, k2 = jax.random.split(jax.random.key(7))
  content = vgg.preprocess(jax.random.uniform(k1, (SIZE, SIZE, 3)))
  style = vgg.preprocess(jax.random.uniform(k2, (SIZE, SIZE, 3)) ** 3)
  targets = losses.compute_targets(random_params, content, [style], None, spec)
  weights = {'content': jnp.float32(1e-2), 'style': jnp.float32(1.0),
             'tv': jnp.float32(1e-3), 'content_layers': jnp.ones(1),
             'style_layers': jnp.full(3, 1 / 3)}

  def loss(x, params, targets, weights):
    return losses.combined_loss(x, params, targets, weights, spec)[0]

  return loss, content, (random_params, targets, weights)


def _run(spec, loss, x0, args, chunks):
  init = jax.jit(functools.partial(optimize.init, spec, loss))
  chunk = jax.jit(functools.partial(optimize.run_chunk, spec, loss))
  state = init(x0, *args)
  for n in chunks:
    state = chunk(state, n, *args)
  return state


@pytest.mark.parametrize('name', optimize.OPTIMIZERS)
def test_optimizer_lowers_the_loss(problem, name):
  loss, x0, args = problem
  spec = optimize.OptimizerSpec(name=name, learning_rate=2.0)
  start = float(loss(x0, *args))
  state = _run(spec, loss, x0, args, [15])
  assert int(state.iteration) == 15
  assert int(state.status) == optimize.RUNNING
  assert float(state.value) < 0.5 * start
  np.testing.assert_allclose(float(state.value),
                             float(loss(state.x, *args)),
                             rtol=1e-5)


@pytest.mark.parametrize('name', ['lbfgs', 'optax_lbfgs', 'lbfgsb'])
def test_chunked_run_equals_one_long_run(problem, name):
  loss, x0, args = problem
  spec = optimize.OptimizerSpec(name=name)
  long = _run(spec, loss, x0, args, [12])
  chunked = _run(spec, loss, x0, args, [5, 4, 3])
  assert int(chunked.iteration) == int(long.iteration) == 12
  assert int(chunked.evaluations) == int(long.evaluations)
  np.testing.assert_allclose(chunked.x, long.x, rtol=0, atol=1e-4)


def _counting(loss):
  """`loss` with a tap whose every backward pass bumps a host counter.

  A backward pass is a real evaluation: its result always feeds the optimiser.
  """
  calls = []

  @jax.custom_vjp
  def tap(x):
    return x

  def tap_bwd(_, g):
    jax.debug.callback(lambda: calls.append(1))
    return (g,)

  tap.defvjp(lambda x: (x, None), tap_bwd)
  return lambda x, *args: loss(tap(x), *args), calls


@pytest.mark.parametrize('name', optimize.OPTIMIZERS)
def test_evaluations_are_counted_right(problem, name):
  loss, x0, args = problem
  counted, calls = _counting(loss)
  spec = optimize.OptimizerSpec(name=name, learning_rate=2.0)
  state = _run(spec, counted, x0, args, [6, 4])
  jax.effects_barrier()
  assert int(state.evaluations) == len(calls)
  assert int(state.evaluations) >= int(state.iteration) + 1


def test_nan_stops_cleanly_keeping_last_good_image(problem):
  loss, x0, args = problem

  def nan_after_threshold(x, *args):
    # Poison the loss once the image has moved far enough from the start.
    bad = jnp.linalg.norm(x - x0) > 1.0
    return jnp.where(bad, jnp.nan, loss(x, *args))

  spec = optimize.OptimizerSpec(name='adam', learning_rate=1.0)
  state = _run(spec, nan_after_threshold, x0, args, [50])
  assert int(state.status) == optimize.NONFINITE
  assert int(state.iteration) < 50
  assert bool(jnp.all(jnp.isfinite(state.x)))
  assert float(jnp.linalg.norm(state.x - x0)) <= 1.0


def _out_of_bounds(x):
  """How far (Caffe units) the image is outside the valid pixel box; <= 0 inside."""
  lower, upper = optimize.pixel_bounds(x)
  return float(jnp.maximum(jnp.max(x - upper), jnp.max(lower - x)))


def test_pixel_bounds_are_the_images_of_0_and_1():
  rgb = jnp.stack([jnp.zeros((2, 2, 3)), jnp.ones((2, 2, 3))])
  lower, upper = optimize.pixel_bounds(jnp.zeros((2, 2, 3)))
  np.testing.assert_array_equal(vgg.preprocess(rgb[0]), lower)
  np.testing.assert_array_equal(vgg.preprocess(rgb[1]), upper)
  x = jnp.asarray([[[-200.0, 0.0, 300.0]]])
  np.testing.assert_allclose(optimize.clip_to_valid(x),
                             [[[-103.939, 0.0, 255 - 123.68]]], rtol=1e-6)


def test_lbfgsb_keeps_pixels_in_bounds_where_lbfgs_does_not(problem):
  loss, x0, (params, targets, weights) = problem
  # A heavy style weight pushes the unbounded optimiser out of range quickly.
  args = (params, targets, dict(weights, style=jnp.float32(10.0)))
  init = lambda spec: jax.jit(functools.partial(optimize.init, spec, loss))(
      x0, *args)
  chunk = lambda spec: jax.jit(functools.partial(optimize.run_chunk, spec,
                                                 loss))
  free_spec = optimize.OptimizerSpec(name='lbfgs')
  boxed_spec = optimize.OptimizerSpec(name='lbfgsb')
  free, boxed = init(free_spec), init(boxed_spec)
  start = float(boxed.value)
  free_excess = []
  for n in (4, 4, 4):
    free = chunk(free_spec)(free, n, *args)
    boxed = chunk(boxed_spec)(boxed, n, *args)
    free_excess.append(_out_of_bounds(free.x))
    # Inside up to float32 rounding of a step that ends on a bound.
    assert _out_of_bounds(boxed.x) <= 1e-3, int(boxed.iteration)
  assert int(boxed.iteration) == 12
  assert int(boxed.status) == optimize.RUNNING
  assert float(boxed.value) < 0.5 * start
  # The test can fail: without bounds, the same problem leaves the range.
  assert max(free_excess) > 10.0
  assert _out_of_bounds(optimize.clip_to_valid(free.x)) <= 0.0
