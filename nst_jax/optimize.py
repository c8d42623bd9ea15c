"""On-device optimisation of the image: L-BFGS (jaxopt or optax), L-BFGS-B or Adam.

Every optimiser is driven the same way: `init` evaluates the loss once at the
starting image, then `run_chunk` performs up to `num_steps` iterations inside a
single jit-compiled `lax.while_loop`, so the host only sees the image between
chunks (to log and save). A chunked run therefore equals one long run: the
carry holds the whole optimiser state.

The carry (`OptState`) also counts value-and-gradient evaluations: the start
point, every line-search trial, and the extra "safe" step a failed jaxopt zoom
search takes (jaxopt's own `num_fun_eval` would also count a start-point
re-evaluation that we switch off, see `_jaxopt_solver`).

'lbfgsb' (jaxopt.LBFGSB) keeps every pixel inside the valid range throughout
(`pixel_bounds`: RGB in [0, 1] is, in Caffe space, [-mean, 255 - mean] per
channel); the others leave it to a final `clip_to_valid`, which changes the
image (and raises the loss) after the optimiser has finished with it. jaxopt's
L-BFGS-B shortens its whole quasi-Newton (subspace) step to where the first
free pixel meets a bound (a TODO in its source), often to 2-10% of it, so it
gains less per iteration: on tubingen / starry night at 96 px (VGG19, seed
normalisation, 100 iterations) it reached a loss of 2.30e8 in 101
evaluations, against 1.22e8 in 104 for 'lbfgs' (1.22e8 still after clipping
the 0.1% of pixel values it had taken out of range).

Shapes: the image `x` is Caffe space float32[H, W, 3] (see `vgg.preprocess`);
`loss_args` is whatever extra arguments the loss takes (params, targets,
weights), always traced.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nst_jax import vgg

JAXOPT_LINESEARCHES = ('zoom', 'hager-zhang', 'backtracking')

# Status codes carried in OptState.status.
RUNNING, CONVERGED, NONFINITE, LINESEARCH_FAILED = 0, 1, 2, 3
STATUS_NAMES = {RUNNING: 'running', CONVERGED: 'converged',
                NONFINITE: 'non-finite loss', LINESEARCH_FAILED:
                'line search failed'}


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
  """Static optimiser settings (hashable: a jit static argument).

  Attributes:
    name: 'lbfgs' (jaxopt.LBFGS), 'optax_lbfgs' (optax.lbfgs), 'adam' or
      'lbfgsb' (jaxopt.LBFGSB, the image kept within `pixel_bounds`).
    history_size: L-BFGS memory (pairs of steps and gradient changes).
    linesearch: jaxopt line search: 'zoom' (strong Wolfe), 'hager-zhang' or
      'backtracking'. 'lbfgsb' takes 'zoom' or 'backtracking' only: its
      feasible points are the steps of at most 1 along its direction, and
      jaxopt's Hager-Zhang search ignores that cap (it expands by 5x).
    max_linesearch_steps: trials per line search before it gives up.
    first_step_fraction: how much the very first L-BFGS step should lower the
      loss, as a fraction of the loss, by the linear prediction: the first
      direction is -grad * fraction * loss / |grad|^2. Before L-BFGS has
      curvature pairs it has no scale of its own; this one is invariant to the
      loss weights and the image size, and the line search corrects it.
      ('lbfgsb': the same step, projected onto the bounds.)
    learning_rate: Adam's step size in Caffe pixel units (0-255 scale).
    gtol: stop when the gradient's RMS (per pixel) falls below this.
  """
  name: str = 'lbfgs'
  history_size: int = 10
  linesearch: str = 'zoom'
  max_linesearch_steps: int = 20
  first_step_fraction: float = 0.1
  learning_rate: float = 5.0
  gtol: float = 0.0


class OptState(NamedTuple):
  """The loop carry: image, optimiser state and counters (all arrays)."""
  x: jax.Array
  inner: Any
  iteration: jax.Array     # int32: completed iterations
  evaluations: jax.Array   # int32: value-and-gradient evaluations so far
  value: jax.Array         # float32: loss at x
  status: jax.Array        # int32: RUNNING, CONVERGED, NONFINITE, ...


# loss_fn(x, *loss_args) -> scalar loss; differentiated here w.r.t. x only.
LossFn = Callable[..., jax.Array]


def pixel_bounds(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Box of valid pixels in Caffe space, broadcast to x's shape float32[H, W, 3].

  RGB in [0, 1] is BGR in [0, 255] minus the mean pixel: per channel
  [-mean_bgr, 255 - mean_bgr], written as `vgg.preprocess` computes the
  images of 0 and 1, so a preprocessed image is exactly inside.
  """
  mean = jnp.asarray(vgg.VGG_MEAN_BGR, x.dtype)
  lower = jnp.zeros((), x.dtype) * 255.0 - mean
  upper = jnp.ones((), x.dtype) * 255.0 - mean
  return jnp.broadcast_to(lower, x.shape), jnp.broadcast_to(upper, x.shape)


def clip_to_valid(x: jax.Array) -> jax.Array:
  """Caffe-space image float32[H, W, 3] clipped to `pixel_bounds`."""
  lower, upper = pixel_bounds(x)
  return jnp.clip(x, lower, upper)


# --- The optimisers: one (init, step) adapter each --------------------------------
#
# init(spec, loss_fn, x, loss_args) -> (x, inner, value, grad)
# step(spec, loss_fn, x, inner, value, grad, loss_args)
#     -> (x, inner, value, grad, evaluations, line search failed)


def _jaxopt_solver(spec: OptimizerSpec, loss_fn: LossFn):
  """jaxopt.LBFGS ('lbfgs') or jaxopt.LBFGSB ('lbfgsb') with our settings."""
  # Imported here: jaxopt warns on import that it is no longer maintained.
  import warnings
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', DeprecationWarning)
    import jaxopt
  solver_class = jaxopt.LBFGSB if spec.name == 'lbfgsb' else jaxopt.LBFGS
  # One jitted value_and_grad for every place jaxopt evaluates the loss (its
  # init, the line search's start and trials): jit traces and lowers it once
  # per shape and each call site reuses that, where a plain function would be
  # traced through VGG again at every site (7 traces per run). XLA inlines
  # the calls, so the compiled program is the same.
  solver = solver_class(
      fun=jax.jit(jax.value_and_grad(loss_fn)), value_and_grad=True,
      has_aux=False,
      history_size=spec.history_size, linesearch=spec.linesearch,
      maxls=spec.max_linesearch_steps,
      # Quasi-Newton steps are scaled to the curvature, so a unit step is the
      # right first guess every iteration ('max'); jaxopt's default grows the
      # previous step by 1.5 and then has to shrink it again. For LBFGSB the
      # cap of 1 is also what keeps the image feasible: the direction ends at
      # a point inside the box, so steps <= 1 stay inside.
      linesearch_init='max', max_stepsize=1.0,
      maxiter=1 << 30, tol=0.0, implicit_diff=False, jit=True,
      # The line search as a while_loop: with implicit_diff=False jaxopt
      # would otherwise scan over all maxls trials behind conds, which vmap
      # (weight sweeps) turns into selects that run every trial: 40x slower.
      unroll=False)
  # LBFGS(B) always tells its line search that the loss has an aux output,
  # and the search then evaluates the loss again at the start point to get
  # that aux (None here): XLA removes it, but jaxopt counts it, and it would
  # run for real if the loss had side effects. Our loss has no aux: say so.
  search = getattr(solver, 'linesearch_solver', None) or solver.run_ls.__self__
  search.has_aux = False
  return solver


def _first_step_scale(spec: OptimizerSpec, value, grad, direction) -> jax.Array:
  """The factor that makes the first step's predicted decrease a fraction of
  the loss: -grad . (s d) = first_step_fraction * |loss|.

  Before L-BFGS has curvature pairs its step has no scale of its own (jaxopt
  steps as long as the gradient, absurd when the loss is 1e9; optax caps it
  at length 1); this one does not depend on the loss weights or image size.
  """
  slope = -jnp.vdot(grad, direction)
  return spec.first_step_fraction * jnp.abs(value) / jnp.maximum(slope, 1e-30)


def _jaxopt_init(spec, loss_fn, x, loss_args):
  solver = _jaxopt_solver(spec, loss_fn)
  if spec.name == 'lbfgsb':
    # L-BFGS-B assumes a feasible start; images from `vgg.preprocess` of RGB
    # in [0, 1] already are, so this only guards other starts.
    x = clip_to_valid(x)
    inner = solver.init_state(x, pixel_bounds(x), *loss_args)
    # Its first direction is -grad / theta: theta = 1 / (the LBFGS gamma).
    scale = _first_step_scale(spec, inner.value, inner.grad, -inner.grad)
    inner = inner._replace(theta=(1.0 / scale).astype(inner.theta.dtype))
  else:
    inner = solver.init_state(x, *loss_args)
    # Its first direction is -gamma * grad.
    scale = _first_step_scale(spec, inner.value, inner.grad, -inner.grad)
    inner = inner._replace(gamma=scale.astype(inner.gamma.dtype))
  return x, inner, inner.value, inner.grad


def _jaxopt_step(spec, loss_fn, x, inner, value, grad, loss_args):
  del value, grad  # jaxopt keeps its own
  solver = _jaxopt_solver(spec, loss_fn)
  bounds = (pixel_bounds(x),) if spec.name == 'lbfgsb' else ()
  x, new = solver.update(x, inner, *bounds, *loss_args)
  # A failed zoom search evaluates once more at a "safe" step.
  evaluations = (new.num_linesearch_iter - inner.num_linesearch_iter
                 + new.failed_linesearch.astype(jnp.int32))
  return x, new, new.value, new.grad, evaluations, new.failed_linesearch


def _scale_first_step(spec: OptimizerSpec) -> optax.GradientTransformationExtraArgs:
  """optax: scales the very first update as `_first_step_scale` says."""
  def init_fn(params):
    del params
    return jnp.zeros([], jnp.int32)

  def update_fn(updates, count, params=None, *, value, grad, **extra):
    del params, extra
    scale = jnp.where(count == 0, _first_step_scale(spec, value, grad, updates),
                      1.0)
    return jax.tree.map(lambda u: u * scale.astype(u.dtype), updates), count + 1
  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _optax_transform(spec: OptimizerSpec) -> optax.GradientTransformationExtraArgs:
  if spec.name == 'adam':
    return optax.adam(spec.learning_rate)
  # optax.lbfgs's chain, with our first step in place of its length-1 one.
  return optax.chain(
      optax.scale_by_lbfgs(memory_size=spec.history_size),
      optax.scale(-1.0), _scale_first_step(spec),
      optax.scale_by_zoom_linesearch(
          max_linesearch_steps=spec.max_linesearch_steps,
          initial_guess_strategy='one'))


def _optax_init(spec, loss_fn, x, loss_args):
  value, grad = jax.value_and_grad(loss_fn)(x, *loss_args)
  return x, _optax_transform(spec).init(x), value, grad


def _adam_step(spec, loss_fn, x, inner, value, grad, loss_args):
  del value
  updates, inner = _optax_transform(spec).update(grad, inner, x)
  x = optax.apply_updates(x, updates)
  value, grad = jax.value_and_grad(loss_fn)(x, *loss_args)
  return x, inner, value, grad, 1, jnp.bool_(False)


def _optax_lbfgs_step(spec, loss_fn, x, inner, value, grad, loss_args):
  # A pure value function: the line search differentiates it itself.
  value_fn = lambda y: loss_fn(y, *loss_args)
  updates, inner = _optax_transform(spec).update(
      grad, inner, x, value=value, grad=grad, value_fn=value_fn)
  x = optax.apply_updates(x, updates)
  # The line search already evaluated the accepted point: reuse it.
  info = optax.tree.get(inner, 'info')
  return (x, inner, optax.tree.get(inner, 'value'), optax.tree.get(inner, 'grad'),
          info.num_linesearch_steps, jnp.bool_(False))


class Optimizer(NamedTuple):
  init: Callable
  step: Callable


OPTIMIZERS: dict[str, Optimizer] = {
    'lbfgs': Optimizer(_jaxopt_init, _jaxopt_step),
    'lbfgsb': Optimizer(_jaxopt_init, _jaxopt_step),
    'optax_lbfgs': Optimizer(_optax_init, _optax_lbfgs_step),
    'adam': Optimizer(_optax_init, _adam_step),
}


def _rms(tree) -> jax.Array:
  return optax.tree.norm(tree) / jnp.sqrt(tree.size)


def init(spec: OptimizerSpec, loss_fn: LossFn, x: jax.Array,
         *loss_args) -> OptState:
  """Evaluates the loss at `x` (one evaluation) and builds the carry."""
  x, inner, value, grad = OPTIMIZERS[spec.name].init(spec, loss_fn, x, loss_args)
  status = jnp.where(jnp.isfinite(value), RUNNING, NONFINITE)
  return OptState(x, (inner, grad), jnp.int32(0), jnp.int32(1), value,
                  status.astype(jnp.int32))


def _step(spec: OptimizerSpec, loss_fn: LossFn, state: OptState,
          loss_args) -> OptState:
  """One iteration; returns the new carry with counters and status updated."""
  inner, grad = state.inner
  x, inner, value, grad, evaluations, failed = OPTIMIZERS[spec.name].step(
      spec, loss_fn, state.x, inner, state.value, grad, loss_args)
  status = jnp.select(
      [~jnp.isfinite(value) | ~jnp.all(jnp.isfinite(x)), failed,
       _rms(grad) <= spec.gtol],
      [NONFINITE, LINESEARCH_FAILED, CONVERGED], RUNNING).astype(jnp.int32)
  return OptState(x, (inner, grad), state.iteration + 1,
                  state.evaluations + jnp.asarray(evaluations, jnp.int32),
                  value, status)


def run_chunk(spec: OptimizerSpec, loss_fn: LossFn,
              state: OptState, num_steps: int | jax.Array, *loss_args,
              max_evaluations: int | jax.Array | None = None) -> OptState:
  """Up to `num_steps` iterations in one `lax.while_loop` (call under jit).

  Stops early, keeping the last finite image, when the status leaves RUNNING
  (on a non-finite loss the offending step is discarded), or once
  `state.evaluations` reaches `max_evaluations` (the last iteration may pass it
  by its line-search trials).
  """
  stop_at = state.iteration + num_steps
  if max_evaluations is None:
    max_evaluations = jnp.iinfo(jnp.int32).max

  def cond(s):
    return ((s.iteration < stop_at) & (s.status == RUNNING) &
            (s.evaluations < max_evaluations))

  def body(s):
    new = _step(spec, loss_fn, s, loss_args)
    # Never hand a NaN image back: keep the last good one, report the status.
    bad = new.status == NONFINITE
    return jax.lax.cond(bad, lambda: s._replace(status=new.status,
                                                evaluations=new.evaluations),
                        lambda: new)

  return jax.lax.while_loop(cond, body, state)
