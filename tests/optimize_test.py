"""Tests for nst_jax.optimize: descent, chunking, evaluation counts, NaN stops."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import benchmark
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


@functools.cache
def _programs(spec, loss):
  """Jitted (init, run_chunk) of `spec` and `loss`, compiled once per test
  module (num_steps, max_evaluations and the loss's arguments are traced)."""
  return (jax.jit(functools.partial(optimize.init, spec, loss)),
          jax.jit(functools.partial(optimize.run_chunk, spec, loss)))


def _run(spec, loss, x0, args, chunks, max_evaluations=None):
  init, chunk = _programs(spec, loss)
  state = init(x0, *args)
  for n in chunks:
    state = chunk(state, n, *args, max_evaluations=max_evaluations)
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


@pytest.mark.parametrize('name', ['lbfgs', 'lbfgs_batched', 'optax_lbfgs',
                                  'lbfgsb'])
def test_chunked_run_equals_one_long_run(problem, name):
  loss, x0, args = problem
  spec = optimize.OptimizerSpec(name=name)
  long = _run(spec, loss, x0, args, [12])
  chunked = _run(spec, loss, x0, args, [5, 4, 3])
  assert int(chunked.iteration) == int(long.iteration) == 12
  assert int(chunked.evaluations) == int(long.evaluations)
  np.testing.assert_allclose(chunked.x, long.x, rtol=0, atol=1e-4)


def _counting(loss):
  """`loss` with the benchmark's tap: a host list grows by one per executed
  backward pass, a real evaluation (its result always feeds the optimiser)."""
  return benchmark.counting_loss(loss)


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
  init = lambda spec: _programs(spec, loss)[0](x0, *args)
  chunk = lambda spec: _programs(spec, loss)[1]
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


def test_lbfgs_batched_reaches_jaxopts_loss_per_evaluation(problem):
  loss, x0, args = problem
  budget = 40
  ours, jaxopts = (_run(optimize.OptimizerSpec(name=name), loss, x0, args,
                        [1 << 30], max_evaluations=budget)
                   for name in ('lbfgs_batched', 'lbfgs'))
  assert budget <= int(ours.evaluations) <= budget + 2
  assert int(ours.iteration) >= 0.8 * budget  # mostly unit steps
  assert float(ours.value) <= 1.02 * float(jaxopts.value)


def test_two_loop_applies_the_bfgs_inverse_hessian():
  """Against H built densely by the BFGS update from gamma * I, for a
  history of 3 pairs in 4 slots (the empty slot must add nothing)."""
  n, pairs, slots = 6, 3, 4
  rng = np.random.default_rng(0)
  a = rng.normal(size=(n, n))
  hessian = a @ a.T + n * np.eye(n)
  s = rng.normal(size=(pairs, n))
  y = s @ hessian
  grad = rng.normal(size=n)
  gamma = s[-1] @ y[-1] / (y[-1] @ y[-1])
  inverse = gamma * np.eye(n)
  for s_k, y_k in zip(s, y):
    rho = 1.0 / (s_k @ y_k)
    v = np.eye(n) - rho * np.outer(y_k, s_k)
    inverse = v.T @ inverse @ v + rho * np.outer(s_k, s_k)
  empty = lambda v: np.concatenate([np.zeros((slots - pairs,) + v.shape[1:]), v])
  history = optimize.History(
      *(jnp.asarray(empty(v), jnp.float32)
        for v in (s, y, 1.0 / np.sum(s * y, axis=1))), jnp.float32(gamma))
  np.testing.assert_allclose(optimize._two_loop(history, jnp.asarray(grad)),
                             -inverse @ grad, rtol=1e-4, atol=1e-6)


def test_lbfgs_batched_converges_on_an_ill_conditioned_quadratic():
  n = 100
  curvatures = jnp.logspace(0, 3, n)  # condition number 1000
  minimum = jax.random.normal(jax.random.key(1), (n,))
  # Written around its minimum (value 0) so that float32 resolves the last
  # iterations' decreases.
  quadratic = lambda x, c, m: 0.5 * jnp.vdot(c * (x - m), x - m)
  spec = optimize.OptimizerSpec(name='lbfgs_batched', gtol=1e-4)
  state = _run(spec, quadratic, jnp.zeros(n), (curvatures, minimum), [400])
  assert int(state.status) == optimize.CONVERGED
  # Gradient descent would need thousands of iterations at this condition.
  assert int(state.iteration) < 250
  assert int(state.evaluations) < 1.3 * int(state.iteration)
  np.testing.assert_allclose(state.x, minimum, atol=1e-3)


def _rosenbrock(x, scale):
  return jnp.sum(scale * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


@pytest.mark.parametrize('name', ['lbfgs_batched', 'lbfgs'])
def test_vmapped_members_cost_one_batched_evaluation_per_trial(name):
  """Each batched call evaluates every member once, so an iteration costs as
  many calls as its slowest member's line search has trials. jaxopt's conds
  turn into selects that evaluate in every branch: it fails the check."""
  counted, calls = _counting(_rosenbrock)
  spec = optimize.OptimizerSpec(name=name)
  scales = jnp.asarray([1.0, 100.0, 10.0, 30.0])
  init = jax.jit(jax.vmap(functools.partial(optimize.init, spec, counted)))
  chunk = jax.jit(jax.vmap(functools.partial(optimize.run_chunk, spec, counted),
                           in_axes=(0, None, 0)))
  state = init(jnp.zeros((4, 8)), scales)
  trials, batched = [], []
  for _ in range(12):
    jax.effects_barrier()
    before, evaluations = len(calls), np.asarray(state.evaluations)
    state = chunk(state, 1, scales)
    jax.effects_barrier()
    trials.append(np.asarray(state.evaluations) - evaluations)
    batched.append(len(calls) - before)
  trials = np.stack(trials)
  # The problem makes members differ and search more than once.
  assert np.any(trials.max(axis=1) > trials.min(axis=1))
  assert np.any(trials > 1)
  if name == 'lbfgs_batched':
    np.testing.assert_array_equal(batched, trials.max(axis=1))
  else:
    assert np.all(np.asarray(batched) > trials.max(axis=1))


def test_a_stopped_member_costs_its_batch_no_evaluations():
  """Under vmap a member whose loop has stopped still runs its step, masked,
  while the others go on: its line search must not run. This one's would
  try all 20 trials (its loss is NaN everywhere but at its start)."""
  def poisoned(x, scale, poison):
    moved = jnp.any(x != 0)
    return _rosenbrock(x, scale) * jnp.where(poison & moved, jnp.nan, 1.0)
  counted, calls = _counting(poisoned)
  spec = optimize.OptimizerSpec(name='lbfgs_batched')
  args = (jnp.asarray([1.0, 1.0]), jnp.asarray([True, False]))
  init = jax.jit(jax.vmap(functools.partial(optimize.init, spec, counted)))
  chunk = jax.jit(jax.vmap(functools.partial(optimize.run_chunk, spec, counted),
                           in_axes=(0, None, 0, 0)))
  state = init(jnp.zeros((2, 8)), *args)
  state = state._replace(status=state.status.at[0].set(optimize.CONVERGED))
  jax.effects_barrier()
  before = len(calls)
  state = chunk(state, 5, *args)
  jax.effects_barrier()
  assert int(state.iteration[0]) == 0 and int(state.iteration[1]) == 5
  assert len(calls) - before == int(state.evaluations[1]) - 1


def test_for_batch_picks_lbfgs_batched_for_vmapped_members_only():
  jaxopts = optimize.OptimizerSpec(name='lbfgs', history_size=7)
  for batch in (0, 2, 8):
    batched = optimize.for_batch(jaxopts, batch)
    assert batched == optimize.OptimizerSpec(name='lbfgs_batched',
                                             history_size=7)
  assert optimize.for_batch(jaxopts, 1) == jaxopts
  adam = optimize.OptimizerSpec(name='adam')
  assert optimize.for_batch(adam, 8) == adam


def test_engine_programs_run_lbfgs_batched_where_members_are_vmapped():
  from nst_jax import programs  # pylint: disable=import-outside-toplevel
  jaxopts = optimize.OptimizerSpec(name='lbfgs')
  # (members per program, sweep.batch) -> the optimiser: a single member,
  # or members one by one, run no vmap and keep jaxopt's.
  for members, batch, name in ((1, 1, 'lbfgs'), (1, 8, 'lbfgs'),
                               (8, 1, 'lbfgs'), (8, 8, 'lbfgs_batched'),
                               (8, 0, 'lbfgs_batched'),
                               (2, 4, 'lbfgs_batched')):
    assert programs.member_optimizer(jaxopts, members, batch).name == name
