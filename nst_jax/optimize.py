"""On-device optimisation of the image: L-BFGS (jaxopt, ours or optax), L-BFGS-B or Adam.

Every optimiser is driven the same way: `init` evaluates the loss once at the
starting image, then `run_chunk` performs up to `num_steps` iterations inside a
single jit-compiled `lax.while_loop`, so the host only sees the image between
chunks (to log and save). A chunked run therefore equals one long run: the
carry holds the whole optimiser state.

The carry (`OptState`) also counts value-and-gradient evaluations: the start
point, every line-search trial, and the extra "safe" step a failed jaxopt zoom
search takes (jaxopt's own `num_fun_eval` would also count a start-point
re-evaluation that we switch off, see `_jaxopt_solver`).

'lbfgs_batched' is our own L-BFGS, written so that members vmapped together
(a sweep with `sweep.batch` != 1) cost one batched loss evaluation per
line-search trial, where jaxopt's conds, turned into selects by vmap,
evaluate in every branch (`for_batch` picks it for them).

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

from nst_jax import vgg

# optax is imported where it is used: 0.1 s of every run's start, and only
# 'adam' and 'optax_lbfgs' need it.

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
    name: 'lbfgs' (jaxopt.LBFGS), 'lbfgs_batched' (ours: one loss
      evaluation per line-search trial under vmap too, see `for_batch`),
      'optax_lbfgs' (optax.lbfgs), 'adam' or 'lbfgsb' (jaxopt.LBFGSB, the
      image kept within `pixel_bounds`).
    history_size: L-BFGS memory (pairs of steps and gradient changes).
    linesearch: jaxopt line search: 'zoom' (strong Wolfe), 'hager-zhang' or
      'backtracking'. 'lbfgsb' takes 'zoom' or 'backtracking' only: its
      feasible points are the steps of at most 1 along its direction, and
      jaxopt's Hager-Zhang search ignores that cap (it expands by 5x).
      'lbfgs_batched' has its own strong-Wolfe search and ignores it.
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
# step(spec, loss_fn, x, inner, value, grad, loss_args, active)
#     -> (x, inner, value, grad, evaluations, line search failed)
# `active` is False where the member's loop has stopped: under vmap its step
# still runs (masked, its result discarded) while other members go on, and a
# step that can should then cost no evaluations.


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


def _jaxopt_step(spec, loss_fn, x, inner, value, grad, loss_args, active):
  del active  # its conds evaluate under vmap whatever the flag
  del value, grad  # jaxopt keeps its own
  solver = _jaxopt_solver(spec, loss_fn)
  bounds = (pixel_bounds(x),) if spec.name == 'lbfgsb' else ()
  x, new = solver.update(x, inner, *bounds, *loss_args)
  # A failed zoom search evaluates once more at a "safe" step.
  evaluations = (new.num_linesearch_iter - inner.num_linesearch_iter
                 + new.failed_linesearch.astype(jnp.int32))
  return x, new, new.value, new.grad, evaluations, new.failed_linesearch


def _scale_first_step(spec: OptimizerSpec
                      ) -> 'optax.GradientTransformationExtraArgs':
  """optax: scales the very first update as `_first_step_scale` says."""
  import optax  # pylint: disable=import-outside-toplevel
  def init_fn(params):
    del params
    return jnp.zeros([], jnp.int32)

  def update_fn(updates, count, params=None, *, value, grad, **extra):
    del params, extra
    scale = jnp.where(count == 0, _first_step_scale(spec, value, grad, updates),
                      1.0)
    return jax.tree.map(lambda u: u * scale.astype(u.dtype), updates), count + 1
  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _optax_transform(spec: OptimizerSpec
                     ) -> 'optax.GradientTransformationExtraArgs':
  import optax  # pylint: disable=import-outside-toplevel
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


def _adam_step(spec, loss_fn, x, inner, value, grad, loss_args, active):
  del active  # its conds evaluate under vmap whatever the flag
  del value
  import optax  # pylint: disable=import-outside-toplevel
  updates, inner = _optax_transform(spec).update(grad, inner, x)
  x = optax.apply_updates(x, updates)
  value, grad = jax.value_and_grad(loss_fn)(x, *loss_args)
  return x, inner, value, grad, 1, jnp.bool_(False)


def _optax_lbfgs_step(spec, loss_fn, x, inner, value, grad, loss_args, active):
  del active  # its conds evaluate under vmap whatever the flag
  import optax  # pylint: disable=import-outside-toplevel
  # A pure value function: the line search differentiates it itself.
  value_fn = lambda y: loss_fn(y, *loss_args)
  updates, inner = _optax_transform(spec).update(
      grad, inner, x, value=value, grad=grad, value_fn=value_fn)
  x = optax.apply_updates(x, updates)
  # The line search already evaluated the accepted point: reuse it.
  info = optax.tree.get(inner, 'info')
  return (x, inner, optax.tree.get(inner, 'value'), optax.tree.get(inner, 'grad'),
          info.num_linesearch_steps, jnp.bool_(False))


# --- Our L-BFGS: one evaluation per line-search trial, under vmap too -------------
#
# jaxopt's line search branches with conds (bracketing or zooming; a failed
# search's "safe" step), each branch evaluating the loss; vmap (a batched
# sweep) turns the conds into selects that run every branch, so a vmapped
# member paid ~3 evaluations per trial. Here the search is one while_loop whose
# body evaluates the loss once, at a trial chosen beforehand with selects, and
# keeps the best point it has seen, so a failed search needs no extra
# evaluation either. B vmapped members cost one batched evaluation per trial;
# a member that has accepted its step is carried unchanged (masked) until the
# slowest member of the batch has accepted its own.

# Sufficient decrease (Armijo) and curvature (strong Wolfe) constants, as
# jaxopt's zoom search has them.
_ARMIJO, _CURVATURE = 1e-4, 0.9
# A search stops (keeping its best sufficient-decrease point) once its bracket
# is narrower than this, in units of the quasi-Newton step.
_MIN_BRACKET = 1e-5


class History(NamedTuple):
  """The L-BFGS memory, newest pair last; rho = 0 marks an empty slot.

  s, y: float32[m, *x.shape] steps x_{k+1} - x_k and gradient changes
  g_{k+1} - g_k; rho: float32[m], 1 / (s . y); gamma: float32, the newest
  pair's s . y / y . y, the scale of the initial inverse Hessian.
  """
  s: jax.Array
  y: jax.Array
  rho: jax.Array
  gamma: jax.Array


def _two_loop(history: History, grad: jax.Array) -> jax.Array:
  """-H grad, H the L-BFGS inverse Hessian (Nocedal & Wright, Algorithm 7.4).

  Empty slots have rho = 0 and s = y = 0, so they add nothing: no masks.
  """
  def newest_first(q, pair):
    s, y, rho = pair
    alpha = rho * jnp.vdot(s, q)
    return q - alpha * y, alpha

  q, alphas = jax.lax.scan(newest_first, grad,
                           (history.s, history.y, history.rho), reverse=True)

  def oldest_first(r, pair):
    s, y, rho, alpha = pair
    return r + (alpha - rho * jnp.vdot(y, r)) * s, None

  r, _ = jax.lax.scan(oldest_first, history.gamma * q,
                      (history.s, history.y, history.rho, alphas))
  return -r


def _cubic_step(lo, f_lo, d_lo, hi, f_hi, d_hi) -> jax.Array:
  """A trial inside the bracket [lo, hi] (either order): the minimiser of the
  cubic through both ends' values and slopes, else of the parabola through
  lo's value and slope and hi's value, else the midpoint; never within 10% of
  the bracket's width from an end (Nocedal & Wright, eq. 3.59).
  """
  width = hi - lo
  d1 = d_lo + d_hi - 3.0 * (f_lo - f_hi) / (lo - hi)
  d2 = jnp.sign(width) * jnp.sqrt(jnp.maximum(d1 * d1 - d_lo * d_hi, 0.0))
  cubic = hi - width * (d_hi + d2 - d1) / (d_hi - d_lo + 2.0 * d2)
  curvature = f_hi - f_lo - d_lo * width
  quadratic = lo - d_lo * width * width / (2.0 * curvature)
  left, right = jnp.minimum(lo, hi), jnp.maximum(lo, hi)
  margin = 0.1 * jnp.abs(width)
  inside = lambda t: jnp.isfinite(t) & (t > left + margin) & (t < right - margin)
  return jnp.where(inside(cubic), cubic,
                   jnp.where(inside(quadratic) & (curvature > 0), quadratic,
                             0.5 * (lo + hi)))


class _Search(NamedTuple):
  """The line search's carry: trial step, bracket, best point, counters."""
  trials: jax.Array   # int32: evaluations so far
  step: jax.Array     # the next trial, in units of the direction
  lo: jax.Array       # the bracket's end with the lowest sufficient decrease...
  f_lo: jax.Array     # ...its loss...
  d_lo: jax.Array     # ...and slope along the direction
  hi: jax.Array
  f_hi: jax.Array
  d_hi: jax.Array
  done: jax.Array     # bool: a step satisfied the strong Wolfe conditions
  best_step: jax.Array  # 0 until a trial satisfies the Armijo condition
  x: jax.Array        # the best point so far (the start until then)...
  value: jax.Array
  grad: jax.Array


def _line_search(spec: OptimizerSpec, value_and_grad, x, value, grad,
                 direction, max_trials):
  """Strong-Wolfe search along `direction` from x, one evaluation per trial.

  The unit step comes first; it is accepted when it lowers the loss enough
  and either flattens the slope enough or still descends (steps are capped at
  1, as jaxopt's with `max_stepsize=1`: a quasi-Newton step is scaled to the
  curvature). Otherwise the minimum is bracketed and zoomed into by cubic
  interpolation (Nocedal & Wright, Algorithms 3.5-3.6, in select form).
  Returns (x, value, grad, trials, found): the accepted point, else the
  lowest one with sufficient decrease after `max_trials` trials (or once
  the bracket is too narrow), else the start and found = False.
  """
  slope = jnp.vdot(grad, direction)
  zero, one = jnp.zeros_like(slope), jnp.ones_like(slope)
  start = _Search(jnp.int32(0), one, zero, value, slope, one, value, slope,
                  jnp.bool_(False), zero, x, value, grad)

  def searching(c):
    narrow = (jnp.abs(c.hi - c.lo) <= _MIN_BRACKET) & (c.best_step > 0)
    return ~c.done & ~narrow & (c.trials < max_trials)

  def trial(c):
    x_t = x + c.step.astype(x.dtype) * direction
    f_t, g_t = value_and_grad(x_t)
    d_t = jnp.vdot(g_t, direction)
    finite = jnp.isfinite(f_t) & jnp.isfinite(d_t)
    armijo = finite & (f_t <= value + _ARMIJO * c.step * slope)
    flat = jnp.abs(d_t) <= _CURVATURE * jnp.abs(slope)
    done = armijo & (flat | ((c.trials == 0) & (d_t < 0)))
    keep = done | (armijo & (f_t < c.value))
    best = lambda new, old: jnp.where(keep, new, old)
    # The bracket: hi takes a trial without enough decrease; otherwise the
    # trial becomes lo, and the old lo becomes hi when the slope says that
    # the minimum lies between them. (The first trial's hi = 1 = the trial
    # makes these the bracketing phase's rules for a search capped at 1.)
    to_hi = ~armijo | (f_t >= c.f_lo)
    flip = ~to_hi & (d_t * (c.hi - c.lo) >= 0)
    pick = lambda t_new, lo, hi: jnp.where(to_hi, t_new, jnp.where(flip, lo, hi))
    hi, f_hi, d_hi = (pick(c.step, c.lo, c.hi), pick(f_t, c.f_lo, c.f_hi),
                      pick(d_t, c.d_lo, c.d_hi))
    lo, f_lo, d_lo = (jnp.where(to_hi, c.lo, c.step),
                      jnp.where(to_hi, c.f_lo, f_t),
                      jnp.where(to_hi, c.d_lo, d_t))
    return _Search(c.trials + 1, _cubic_step(lo, f_lo, d_lo, hi, f_hi, d_hi),
                   lo, f_lo, d_lo, hi, f_hi, d_hi, done,
                   best(c.step, c.best_step), best(x_t, c.x), best(f_t, c.value),
                   best(g_t, c.grad))

  end = jax.lax.while_loop(searching, trial, start)
  return end.x, end.value, end.grad, end.trials, end.best_step > 0


def _lbfgs_init(spec, loss_fn, x, loss_args):
  value, grad = jax.value_and_grad(loss_fn)(x, *loss_args)
  m = spec.history_size
  empty = jnp.zeros((m,) + x.shape, x.dtype)
  history = History(empty, empty, jnp.zeros(m, x.dtype), jnp.ones((), x.dtype))
  return x, history, value, grad


def _lbfgs_step(spec, loss_fn, x, history, value, grad, loss_args, active):
  value_and_grad = lambda y: jax.value_and_grad(loss_fn)(y, *loss_args)
  direction = _two_loop(history, grad)
  # No pairs yet (or a direction that does not descend, which rounding can
  # make of a nearly flat one): the gradient, scaled as the first step is.
  steepest = -grad * _first_step_scale(spec, value, grad, -grad)
  descends = jnp.vdot(grad, direction) < 0
  direction = jnp.where(jnp.any(history.rho > 0) & descends, direction,
                        steepest)
  new_x, new_value, new_grad, trials, found = _line_search(
      spec, value_and_grad, x, value, grad, direction,
      jnp.where(active, spec.max_linesearch_steps, 0))
  s, y = new_x - x, new_grad - grad
  sy, yy = jnp.vdot(s, y), jnp.vdot(y, y)
  # Skip a pair without positive curvature (relative to float32 rounding):
  # it would make H indefinite. A search that found nothing gives s = 0.
  curved = sy > jnp.finfo(x.dtype).eps * jnp.sqrt(jnp.vdot(s, s) * yy)
  push = lambda old, new: jnp.concatenate([old[1:], new[None]])
  pushed = History(push(history.s, s), push(history.y, y),
                   push(history.rho, 1.0 / jnp.where(curved, sy, 1.0)),
                   sy / jnp.where(curved, yy, 1.0))
  history = jax.tree.map(lambda new, old: jnp.where(curved, new, old),
                         pushed, history)
  return new_x, history, new_value, new_grad, trials, ~found


class Optimizer(NamedTuple):
  init: Callable
  step: Callable


OPTIMIZERS: dict[str, Optimizer] = {
    'lbfgs': Optimizer(_jaxopt_init, _jaxopt_step),
    'lbfgsb': Optimizer(_jaxopt_init, _jaxopt_step),
    'lbfgs_batched': Optimizer(_lbfgs_init, _lbfgs_step),
    'optax_lbfgs': Optimizer(_optax_init, _optax_lbfgs_step),
    'adam': Optimizer(_optax_init, _adam_step),
}


def for_batch(spec: OptimizerSpec, batch: int) -> OptimizerSpec:
  """The optimiser for members run `batch` at a time under vmap (0 = all).

  Under vmap jaxopt's line search evaluates the loss in every branch of its
  conds, so vmapped members switch from 'lbfgs' to 'lbfgs_batched' (one
  batched evaluation per trial); members run one by one (batch 1) keep
  'lbfgs', and the other optimisers are kept as they are.
  """
  if batch != 1 and spec.name == 'lbfgs':
    return dataclasses.replace(spec, name='lbfgs_batched')
  return spec


def _rms(tree) -> jax.Array:
  return jnp.sqrt(jnp.sum(tree * tree)) / jnp.sqrt(tree.size)


def init(spec: OptimizerSpec, loss_fn: LossFn, x: jax.Array,
         *loss_args) -> OptState:
  """Evaluates the loss at `x` (one evaluation) and builds the carry."""
  x, inner, value, grad = OPTIMIZERS[spec.name].init(spec, loss_fn, x, loss_args)
  status = jnp.where(jnp.isfinite(value), RUNNING, NONFINITE)
  return OptState(x, (inner, grad), jnp.int32(0), jnp.int32(1), value,
                  status.astype(jnp.int32))


def _step(spec: OptimizerSpec, loss_fn: LossFn, state: OptState,
          loss_args, active: jax.Array) -> OptState:
  """One iteration; returns the new carry with counters and status updated.

  `active`: whether the loop still runs this member (see the adapters).
  """
  inner, grad = state.inner
  x, inner, value, grad, evaluations, failed = OPTIMIZERS[spec.name].step(
      spec, loss_fn, state.x, inner, state.value, grad, loss_args, active)
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
    # Always true unless vmapped: there the body runs while any member's
    # cond holds, and a stopped member's step should not cost evaluations.
    new = _step(spec, loss_fn, s, loss_args, cond(s))
    # Never hand a NaN image back: keep the last good one, report the status.
    bad = new.status == NONFINITE
    return jax.lax.cond(bad, lambda: s._replace(status=new.status,
                                                evaluations=new.evaluations),
                        lambda: new)

  return jax.lax.while_loop(cond, body, state)
