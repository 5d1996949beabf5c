#!/usr/bin/env bash
# The GPU check (issue #25): ONE prepared script for a GPU machine as it is (no network at all, the
# image's python3 with torch preinstalled, one GPU), run as `bash bench/gpu_check.sh` with gpu_bundle/
# (built here by `make gpu-bundle`) travelling beside the checkout. `make gpu-check` rehearses it on a
# CPU machine. It never creates a virtual environment and never reaches a network: the missing
# packages come from the bundle's wheels (`pip install --no-index --no-deps --target`), the caches from
# its cache/ folder.
#
# Results, under ${OUT:-gpu_check/<UTC time>} (at most 8 files come back from a GPU machine):
#   summary.md  first the machine and versions, then one section after another: `python -m
#               bench.speed.gpu SECTION` appends its heading and rows as it measures them, and this
#               script a line after each with its exit status and seconds. Readable alone; a killed
#               check leaves every finished row in it.
#   log.txt     everything the steps printed
#   and what a section keeps beside the summary (bench.speed.gpu's peak writes peak.json)
#
# Each section runs under its own `timeout`, capped by what is left of GPU_CHECK_BUDGET_S so that the
# whole check ends in time even when a step hangs. Without a GPU every section runs in its CPU mode
# (--device cpu --quick). When nvidia-smi lists a GPU and torch cannot use it, the check stops at once
# and prints the driver's and torch's CUDA versions.
#
# Settings: PYTHON (default python3: the image's, which holds torch), GPU_BUNDLE (default gpu_bundle),
# GPU_CHECK_SITE (where the wheels are installed, default /tmp/vqbench-gpu-site), VQBENCH_CACHE
# (default /tmp/vqbench-gpu-cache, seeded from the bundle), GPU_CHECK_SECTIONS (default
# "peak steps eval search resume"), GPU_CHECK_QUICK=1 (--quick on the GPU too), GPU_CHECK_BUDGET_S
# (default 450 on a GPU, 270 on the CPU), GPU_CHECK_LIMIT_S (every section's limit instead of the table
# below: a dry run, or a loaded machine), GPU_CHECK_MODULE (default bench.speed.gpu).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

START=$(date +%s)
OUT=${OUT:-gpu_check/$(date -u +%Y%m%dT%H%M%SZ)}
PYTHON=${PYTHON:-python3}
BUNDLE=${GPU_BUNDLE:-gpu_bundle}
SITE=${GPU_CHECK_SITE:-/tmp/vqbench-gpu-site}
MODULE=${GPU_CHECK_MODULE:-bench.speed.gpu}
SECTIONS=${GPU_CHECK_SECTIONS:-peak steps eval search resume}
case $BUNDLE in /*) ;; *) BUNDLE=$ROOT/$BUNDLE ;; esac
mkdir -p "$OUT"
SUMMARY=$OUT/summary.md
LOG=$OUT/log.txt
: >"$SUMMARY"
: >"$LOG"

export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export VQBENCH_CACHE=${VQBENCH_CACHE:-/tmp/vqbench-gpu-cache} VQBENCH_GPU_BUNDLE=$BUNDLE
# Nothing may try a network: the hub libraries fail at once instead of waiting on a connection.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 RAY_AUTH_MODE=disabled
export PYTHONPATH=$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}

md() { printf '%s\n' "$*" >>"$SUMMARY"; }
say() { printf '%s\n' "$*" | tee -a "$LOG"; }
elapsed() { echo $(($(date +%s) - START)); }

# ---- the machine -------------------------------------------------------------------------------
GPUS=0
if command -v nvidia-smi >/dev/null 2>&1; then
    GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
fi
GPU_LINE=none
DRIVER=none
if [ "$GPUS" -gt 0 ]; then
    GPU_LINE=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)
    DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
fi
TORCH=$("$PYTHON" -c 'import sys, torch
print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None, torch.cuda.is_available())' 2>>"$LOG")
read -r PY_VERSION TORCH_VERSION TORCH_CUDA CUDNN CUDA_OK <<<"${TORCH:-? ? ? ? False}"

md "# vqbench GPU check"
md ""
md "| | |"
md "| --- | --- |"
md "| date | $(date -u +%FT%TZ) |"
md "| commit | $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown) |"
md "| host | $(uname -srm), $(nproc) CPUs |"
md "| GPU (nvidia-smi) | $GPUS: $GPU_LINE, driver $DRIVER |"
md "| python | $PY_VERSION ($(command -v "$PYTHON")) |"
md "| torch | $TORCH_VERSION, CUDA $TORCH_CUDA, cuDNN $CUDNN, cuda available: $CUDA_OK |"

if [ "$GPUS" -gt 0 ] && [ "$CUDA_OK" != True ]; then
    md ""
    md "**Stopped: nvidia-smi lists $GPUS GPU(s) (driver $DRIVER) but torch $TORCH_VERSION (built for CUDA $TORCH_CUDA) cannot use them.** A driver older than torch's CUDA is the usual cause. No step ran."
    say "gpu_check: nvidia-smi sees $GPUS GPU(s) but torch cannot use them: driver $DRIVER, torch $TORCH_VERSION built for CUDA $TORCH_CUDA; stopping"
    exit 3
fi
if [ "$CUDA_OK" = True ]; then
    DEVICE=cuda
    MODE=()
    [ "${GPU_CHECK_QUICK:-0}" = 1 ] && MODE=(--quick)
    BUDGET_S=${GPU_CHECK_BUDGET_S:-450}
else
    DEVICE=cpu
    MODE=(--quick)
    BUDGET_S=${GPU_CHECK_BUDGET_S:-270}
fi
md "| mode | --device $DEVICE ${MODE[*]}, budget ${BUDGET_S} s |"

# ---- the bundle --------------------------------------------------------------------------------
# Every file the MANIFEST names must be there with its size: a bundle cut short in transit says so here.
if [ -f "$BUNDLE/MANIFEST" ]; then
    PROBLEMS=$(grep -v '^#' "$BUNDLE/MANIFEST" | while IFS=$'\t' read -r file size _; do
        [ -n "$file" ] || continue
        have=$(stat -c %s "$BUNDLE/$file" 2>/dev/null || echo missing)
        [ "$have" = "$size" ] || printf '%s (%s of %s bytes) ' "$file" "$have" "$size"
    done)
    md "| bundle | $(sed -n 's/^# python /CPython /p' "$BUNDLE/MANIFEST" | head -1), $(sed -n 's/^# \([0-9]* files, [0-9]* bytes ([0-9.]* MiB)\).*/\1/p' "$BUNDLE/MANIFEST") |"
    if [ -n "$PROBLEMS" ]; then
        md "| bundle problems | $PROBLEMS |"
    fi
    began=$(date +%s)
    timeout --kill-after=5 60 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --disable-pip-version-check --upgrade --target "$SITE" "$BUNDLE"/wheels/*.whl >>"$LOG" 2>&1
    rc=$?
    # Seeds only what the cache lacks: a cache of this machine's own (float32 FID weights) is never overwritten.
    while IFS= read -r file; do
        [ -e "$VQBENCH_CACHE/$file" ] && continue
        mkdir -p "$(dirname "$VQBENCH_CACHE/$file")" && cp "$BUNDLE/cache/$file" "$VQBENCH_CACHE/$file" || rc=$((rc ? rc : 1))
    done < <(cd "$BUNDLE/cache" 2>/dev/null && find . -type f | sed 's|^\./||')
    md "| bundle install | rc=$rc in $(($(date +%s) - began)) s: $(ls "$BUNDLE"/wheels | tr '\n' ' ')into $SITE; cache seeded into $VQBENCH_CACHE |"
else
    md "| bundle | **none at $BUNDLE**: build it with \`make gpu-bundle\` and carry it with the checkout; the steps that need it fail |"
fi
while IFS= read -r line; do md "| bundle left out | ${line#\# left out: } |"; done < <(grep '^# left out: ' "$BUNDLE/MANIFEST" 2>/dev/null)
md ""

if ! "$PYTHON" -c "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('$MODULE') else 1)" 2>>"$LOG"; then
    md "**Stopped: $MODULE is not in this checkout; no section ran.**"
    say "gpu_check: no module $MODULE; stopping"
    exit 4
fi

# ---- the sections ------------------------------------------------------------------------------
CHILD=
CURRENT=
on_signal() {
    [ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null
    md ""
    md "_Check interrupted during ${CURRENT:-setup} after $(elapsed) s: the rows above are those finished._"
    exit 143
}
trap on_signal TERM INT HUP
# Caps in seconds, per section: on the GPU (full) and in CPU/quick mode.
limit_for() {
    if [ "$DEVICE" = cuda ] && [ ${#MODE[@]} -eq 0 ]; then
        case $1 in peak) echo 30 ;; steps) echo 200 ;; eval) echo 90 ;; search) echo 60 ;; resume) echo 150 ;; *) echo 60 ;; esac
    else
        case $1 in peak) echo 15 ;; steps) echo 90 ;; eval) echo 45 ;; search) echo 30 ;; resume) echo 90 ;; *) echo 30 ;; esac
    fi
}

FAILED=0
for section in $SECTIONS; do
    limit=$(limit_for "$section")
    left=$((BUDGET_S - $(elapsed)))
    if [ "$left" -lt 5 ]; then
        md ""
        md "_${section}: skipped, the ${BUDGET_S} s budget is spent._"
        FAILED=1
        continue
    fi
    [ -n "${GPU_CHECK_LIMIT_S:-}" ] && limit=$GPU_CHECK_LIMIT_S
    [ "$limit" -gt "$left" ] && limit=$left
    say "=== $section (--device $DEVICE ${MODE[*]}, limit ${limit} s) ==="
    began=$(date +%s)
    CURRENT=$section
    # In the background and waited for, so that a signal to this script reaches the step (timeout
    # runs it in a process group of its own and passes a TERM on to it).
    timeout --kill-after=5 "$limit" "$PYTHON" -m "$MODULE" "$section" --summary "$SUMMARY" --device "$DEVICE" \
        "${MODE[@]}" > >(tee -a "$LOG") 2>&1 &
    CHILD=$!
    wait "$CHILD"
    rc=$?
    CHILD=
    took=$(($(date +%s) - began))
    case $rc in
        0) status="done" ;;
        124 | 137) status="**timed out** (rows above are those it finished)"; FAILED=1 ;;
        *) status="**failed, exit $rc** (see log.txt)"; FAILED=1 ;;
    esac
    md ""
    md "_${section}: ${status} in ${took} s of ${limit} s._"
    say "=== $section: rc=$rc in ${took}s ==="
done

md ""
md "Check finished in $(elapsed) s; $( [ $FAILED = 0 ] && echo 'every section done' || echo 'NOT every section done')."
say "gpu_check: finished in $(elapsed)s; results in $OUT"
exit $FAILED
