"""The engine's compiled programs over M members, and moving their arrays.

`compiled_programs` jits `optimize.init`, `optimize.run_chunk` and the loss
terms for M members sharded over a mesh axis 'members'; `put` and `host`
move arrays between the host and that sharding (every process holds the
whole of a host value).
"""

import collections
from collections.abc import Callable

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from nst_jax import losses
from nst_jax import optimize


def total_loss(loss_spec: losses.LossSpec) -> Callable[..., jax.Array]:
  """loss(x, params, shared, per_member, weights) -> scalar, for one member."""
  def loss(x, params, shared, per_member, weights):
    return losses.combined_loss(x, params, {**shared, **per_member}, weights,
                                loss_spec)[0]
  return loss


def _over_members(fn: Callable, num_members: int, in_axes: tuple,
                  mesh: Mesh | None = None, batch: int = 1) -> Callable:
  """`fn` of one member applied to M members (leading axes, as in_axes says).

  Each device of `mesh` takes its share of the members (axis 'members') and
  runs them `batch` at a time under vmap, one batch after another (0: all at
  once). Under vmap conds become selects that run every branch: jaxopt's line
  search then evaluates the loss in each, which is why vmapped members run
  'lbfgs_batched' (`member_optimizer`). With batch 1 each member runs the
  operations of its single run, conds included. M = 1 (a single run) needs
  no mapping at all.
  """
  if num_members > 1:
    def local(*args):
      if batch == 0:
        return jax.vmap(fn, in_axes=in_axes)(*args)
      member_args = [a for a, axis in zip(args, in_axes) if axis is not None]
      def one_member(sliced):
        it = iter(sliced)
        return fn(*[a if axis is None else next(it)
                    for a, axis in zip(args, in_axes)])
      # lax.map with batch_size vmaps inside each batch; batch 1 must not
      # (a vmap of one still turns the conds into selects).
      return jax.lax.map(one_member, member_args,
                         batch_size=batch if batch > 1 else None)
    if mesh is None:
      return local
    specs = tuple(P() if axis is None else P('members') for axis in in_axes)
    # check_vma=False: jaxopt's conds mix per-member and replicated values,
    # which shard_map's type check refuses although each device's work is
    # its own.
    return jax.shard_map(local, mesh=mesh, in_specs=specs,
                         out_specs=P('members'), check_vma=False)
  def one(*args):
    args = [a if axis is None else jax.tree.map(lambda v: v[0], a)
            for a, axis in zip(args, in_axes)]
    return jax.tree.map(lambda v: v[None], fn(*args))
  return one


def vmaps_members(num_members: int, batch: int) -> bool:
  """Whether `_over_members` runs members under vmap (a batch of one too)."""
  return num_members > 1 and batch != 1


def member_optimizer(optimizer_spec: optimize.OptimizerSpec, num_members: int,
                     batch: int) -> optimize.OptimizerSpec:
  """The optimiser a program of `num_members` members, `batch` at a time, runs:
  `optimize.for_batch` of the members a vmap takes at once (1: no vmap)."""
  return optimize.for_batch(optimizer_spec,
                            batch if vmaps_members(num_members, batch) else 1)


def member_programs(loss: Callable[..., jax.Array],
                    optimizer_spec: optimize.OptimizerSpec, num_members: int,
                    mesh: Mesh | None = None, batch: int = 1
                    ) -> tuple[Callable, Callable]:
  """(init, run_chunk) of `loss` for `num_members` members, not yet jitted.

  init(x0[M, H, W, 3], params, shared, per_member, weights) -> OptState[M]
  run_chunk(state, num_steps, max_evaluations, params, shared, per_member,
            weights) -> OptState
  The optimiser is `member_optimizer`'s; members are mapped by
  `_over_members`. The benchmark runs these with a counting loss.
  """
  ospec = member_optimizer(optimizer_spec, num_members, batch)
  member_args = (None, None, 0, 0)  # params, shared, per_member, weights
  one_init = lambda x, *a: optimize.init(ospec, loss, x, *a)
  # Each member's while_loop stops on its own status; under vmap, finished
  # members are carried through unchanged until the last one stops.
  one_chunk = lambda s, n, budget, *a: optimize.run_chunk(
      ospec, loss, s, n, *a, max_evaluations=budget)
  return (_over_members(one_init, num_members, (0,) + member_args, mesh,
                        batch),
          _over_members(one_chunk, num_members, (0, None, None) + member_args,
                        mesh, batch))


def compiled_programs(loss_spec: losses.LossSpec,
                      optimizer_spec: optimize.OptimizerSpec, mesh: Mesh,
                      num_members: int, traces: collections.Counter | None = None,
                      batch: int = 1):
  """(init, run_chunk, loss_terms) for `num_members` members, sharded on `mesh`.

  init(x0[M, H, W, 3], params, shared, per_member, weights) -> OptState[M]
  run_chunk(state, num_steps, max_evaluations, params, shared, per_member,
            weights) -> OptState
  loss_terms(x[M, H, W, 3], params, shared, per_member, weights) -> {term: [M]}

  Member-indexed arguments are sharded over the mesh axis 'members' (M a
  multiple of its devices); params, shared targets, num_steps and
  max_evaluations (`optimize.run_chunk`'s budget) replicated.
  Each device runs its members `batch` at a time (config.sweep.batch; see
  `_over_members`), with `member_optimizer`'s optimiser. jit compiles each once per shape (keep the returned
  functions to reuse them); `traces` counts the traces.
  """
  traces = traces if traces is not None else collections.Counter()
  batched, replicated = NamedSharding(mesh, P('members')), NamedSharding(mesh, P())
  member_args = (None, None, 0, 0)  # params, shared, per_member, weights
  mapped_init, mapped_chunk = member_programs(
      total_loss(loss_spec), optimizer_spec, num_members, mesh, batch)

  def init(x0, *args):
    traces['init'] += 1
    return mapped_init(x0, *args)

  def chunk(state, num_steps, max_evaluations, *args):
    traces['chunk'] += 1
    return mapped_chunk(state, num_steps, max_evaluations, *args)

  def terms(x, params, shared, per_member, weights):
    traces['terms'] += 1
    one = lambda x, *a: losses.combined_loss(
        x, a[0], {**a[1], **a[2]}, a[3], loss_spec)[1]
    return _over_members(one, num_members, (0,) + member_args, mesh, batch)(
        x, params, shared, per_member, weights)

  args_sharding = (replicated, replicated, batched, batched)
  return (jax.jit(init, in_shardings=(batched,) + args_sharding,
                  out_shardings=batched),
          jax.jit(chunk, in_shardings=(batched, replicated, replicated)
                  + args_sharding, out_shardings=batched, donate_argnums=0),
          jax.jit(terms, in_shardings=(batched,) + args_sharding,
                  out_shardings=batched))


def put(value, sharding: NamedSharding) -> jax.Array:
  """A global array with `sharding` from a value every process holds whole."""
  value = np.asarray(value)
  return jax.make_array_from_callback(value.shape, sharding,
                                      lambda index: value[index])


def host(x: jax.Array) -> np.ndarray:
  """The whole of a (possibly multi-host) array, on this host."""
  if jax.process_count() == 1:
    return np.asarray(x)
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def slot_devices(x: jax.Array) -> list[str]:
  """The device that holds each slot (leading index) of a sharded array."""
  out = [''] * x.shape[0]
  for device, index in x.sharding.devices_indices_map(x.shape).items():
    for slot in range(*index[0].indices(x.shape[0])):
      out[slot] = str(device)
  return out
