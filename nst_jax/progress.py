"""What a run logs: the sweep's layout, progress (iterations, evaluations,
losses, rate, ETA) and the results."""

from collections.abc import Sequence

import numpy as np

from nst_jax import image as image_lib
from nst_jax import spec as spec_lib

# Enlarging an image more than this much is worth a warning: a thumbnail
# passed by mistake gives a blurred result.
MAX_QUIET_UPSCALE = 4.0


def format_seconds(seconds: float) -> str:
  """'42s', or '3m07s' from a minute up."""
  seconds = int(round(seconds))
  return f'{seconds // 60}m{seconds % 60:02d}s' if seconds >= 60 else f'{seconds}s'


def eta_text(spec: spec_lib.RunSpec, hws: Sequence[tuple[int, int]],
             scale: int, done: int, per_iteration: float) -> str:
  """'ETA 1m05s', with '(all scales ~...)' before the last scale.

  Later scales are guessed from this one (at `per_iteration` seconds): time
  grows with the pixel count and with the memory path's repeated work (4096
  px on tiles). `hws` is each scale's (H, W).
  """
  eta = per_iteration * (spec.scale_iterations[scale] - done)
  if scale + 1 == len(hws):
    return f'ETA {format_seconds(eta)}'
  def cost(k: int) -> float:
    return float(np.prod(hws[k])) * spec.scale_loss_specs[k].relative_cost(hws[k])
  later = sum(spec.scale_iterations[k] * cost(k) / cost(scale)
              for k in range(scale + 1, len(hws)))
  return (f'ETA {format_seconds(eta)} (all scales ~'
          f'{format_seconds(eta + per_iteration * later)})')


def progress_line(spec: spec_lib.RunSpec, members: Sequence[spec_lib.Member],
                  scale: int, done: int, evals: np.ndarray,
                  terms: dict[str, np.ndarray], rate: float, eta: str) -> str:
  """The log line after a chunk: a single run's losses, or a sweep call's
  members and their evaluations (`evals`, `terms`: per slot)."""
  num_scales, total = len(members[0].scale_hws), spec.scale_iterations[scale]
  where = f'scale {scale + 1}/{num_scales} ' if num_scales > 1 else ''
  if spec.sweep:
    return (f'{where}members {members[0].index}-{members[-1].index}  iter '
            f'{done:>5}/{total}  evals {int(evals.min())}-{int(evals.max())}  '
            f'{rate:.2f} evals/s  {eta}')
  return (f'{where}iter {done:>5}/{total}  evals {int(evals[0]):>5}  total '
          f'{terms["total"][0]:.4g}  content {terms["content"][0]:.4g}  style '
          f'{terms["style"][0]:.4g}  tv {terms["tv"][0]:.4g}  {rate:.2f} '
          f'evals/s  {eta}')


def sweep_line(spec: spec_lib.RunSpec, devices: Sequence, calls: Sequence
               ) -> str:
  """'sweep: 4 members (grid of ...) on 1 device(s) (cpu), 1 call(s) of 4'."""
  return (f'sweep: {len(spec.members)} members ({spec.mode} of '
          + ', '.join(f'{f} x{len(spec.values[f])}' for f in spec.fields)
          + f') on {len(devices)} device(s) ({devices[0].platform}), '
          f'{len(calls)} call(s) of {len(calls[0])}')


def result_lines(spec: spec_lib.RunSpec, rows: Sequence[dict], sheet,
                 seconds: float, compiles: str) -> list[str]:
  """The lines that end a run: each member's result and what was written
  (a sweep's `rows` and `sheet`), and `compiles` (all of the run's)."""
  lines = []
  if spec.sweep:
    lines += [f"{row['file']}: total {row['total']:.4g}  content "
              f"{row['content']:.4g}  style {row['style']:.4g}  tv "
              f"{row['tv']:.4g}  ({row['iterations']} iterations, "
              f"{row['evaluations']} evaluations, {row['status']})"
              for row in rows]
    lines.append(f'wrote {len(rows)} images, {sheet}, results.jsonl and '
                 f'config.json in {spec.workdir} ({seconds:.1f}s)')
  lines.append(f'all compiling: {compiles}')
  row = rows[0]
  if not spec.sweep and spec.workdir and row['status'] != 'diverged':
    lines.append(f"wrote {spec.workdir / row['file']} ({row['iterations']} "
                 f"iterations, {row['evaluations']} evaluations, "
                 f'{seconds:.1f}s); snapshots, losses.jsonl and config.json '
                 f'are in {spec.workdir}')
  return lines


def upscale_warnings(spec: spec_lib.RunSpec) -> list[str]:
  """A warning line for each content or style image that the run enlarges
  more than MAX_QUIET_UPSCALE times (at its largest scale)."""
  lines, seen = [], set()
  for m in spec.members:
    hw = m.scale_hws[-1]
    long_side = spec_lib.style_long_side(spec.style_scale, hw)
    for path, side in ((m.content_path, max(hw)),
                       *((p, long_side) for p in spec.style_paths)):
      if path in seen:
        continue
      seen.add(path)
      h, w = image_lib.read_image_size(path)
      if side > MAX_QUIET_UPSCALE * max(h, w):
        lines.append(f'warning: {path} is {w}x{h} px, enlarged '
                     f'{side / max(h, w):.0f}x to {side} px on its long side: '
                     'if it is a thumbnail, pass the full-size image')
  return lines
