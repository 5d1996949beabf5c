#!/usr/bin/env bash
# The GPU check (issue #18): ONE prepared script for a CUDA machine, `make gpu-check` or
# `bash bench/gpu_check.sh`. Everything it measures goes under one folder, ${OUT:-gpu_check/<UTC time>}:
#   summary.txt       what ran, exit status and seconds of each step, whether a GPU was found
#   environment.txt   nvidia-smi, python, torch and CUDA versions
#   install.log       the virtual environment and `make install-test PYTHON=...`
#   pytest_gpu.log    `pytest -m gpu`
#   speed.csv/.log    `python -m bench.speed` (the GPU table)
#   short_run.csv/.log  a `gpu`-preset run shortened to GPU_CHECK_STEPS steps for vqgan and vqct:
#                     loop step time, images/s, peak memory, the quantizer's share (bench/speed/short_run.py)
#   data_parallel.log the 2-worker data-parallel tests, only when two GPUs are present
# Each step runs under `timeout`, capped by what is left of GPU_CHECK_BUDGET_S (default 470 s, so the
# whole check stays under 8 minutes even when one step hangs).
#
# Without a CUDA GPU it says so in summary.txt and runs quick CPU fallbacks instead (the quantizer
# table's --quick subset and a 2-step `smoke` short run on the CPU), so the script's plumbing is
# exercised everywhere. GPU_CHECK_QUICK=1 (the test's mode) skips the installation and every
# fallback that takes more than a few seconds: it records the environment and the missing GPU only.
#
# Settings: PYTHON (interpreter that creates the venv, default python3), VENV (default .venv-gpu-check),
# GPU_CHECK_NO_INSTALL=1 (use $PYTHON as it is, e.g. on a machine without network), GPU_CHECK_STEPS
# (default 300), GPU_CHECK_METHODS (default vqgan,vqct), GPU_CHECK_BUDGET_S.
set -u
cd "$(dirname "$0")/.."

OUT=${OUT:-gpu_check/$(date -u +%Y%m%dT%H%M%SZ)}
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-gpu-check}
QUICK=${GPU_CHECK_QUICK:-0}
STEPS=${GPU_CHECK_STEPS:-300}
METHODS=${GPU_CHECK_METHODS:-vqgan,vqct}
BUDGET_S=${GPU_CHECK_BUDGET_S:-470}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
START=$(date +%s)
: >"$SUMMARY"

note() { echo "$*" | tee -a "$SUMMARY"; }

# run_step NAME LIMIT_S COMMAND...: COMMAND under `timeout`, its output in OUT/NAME.log. The limit is
# capped by the budget left, so a hang in one step cannot take the time of the steps after it.
run_step() {
    local name=$1 limit=$2 left began rc
    shift 2
    left=$((BUDGET_S - ($(date +%s) - START)))
    if [ "$left" -lt 5 ]; then
        note "$name: skipped, the ${BUDGET_S}s budget is spent"
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    began=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    local why=""
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && why=" (timed out)"
    note "$name: rc=$rc in $(($(date +%s) - began))s of ${limit}s$why"
}

gpu_count() {
    command -v nvidia-smi >/dev/null 2>&1 || { echo 0; return; }
    nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true
}

GPUS=$(gpu_count)
{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(uname -srm)"
    echo "nvidia-smi GPUs: $GPUS"
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi 2>&1 | head -20
    "$PYTHON" -c 'import sys, torch; print("python", sys.version.split()[0]); print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1
} >"$OUT/environment.txt"

if [ "$GPUS" -eq 0 ]; then
    note "no GPU found (nvidia-smi lists none): CPU fallbacks only, no GPU numbers"
    if [ "$QUICK" = 1 ]; then
        note "quick mode (GPU_CHECK_QUICK=1): fallbacks skipped"
    else
        run_step speed 120 "$PYTHON" -m bench.speed --quick --methods vqgan --device cpu --no-stress --no-train-step --csv "$OUT/speed.csv"
        run_step short_run 180 "$PYTHON" -m bench.speed.short_run --methods vqgan --preset smoke --steps 2 \
            --device cpu --no-share --out "$OUT/runs" --csv "$OUT/short_run.csv"
    fi
    note "done in $(($(date +%s) - START))s; results in $OUT"
    exit 0
fi

note "$GPUS GPU(s) found"
PY=$PYTHON
if [ "${GPU_CHECK_NO_INSTALL:-0}" != 1 ]; then
    run_step install 150 bash -c "'$PYTHON' -m venv '$VENV' && make install-test PYTHON='$VENV/bin/python'"
    if "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then
        PY=$VENV/bin/python
    else
        note "the venv has no torch (see install.log): using $PYTHON as it is"
    fi
fi
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    note "nvidia-smi lists $GPUS GPU(s) but torch.cuda.is_available() is False in $PY: the GPU steps would run on the CPU"
fi

run_step pytest_gpu 60 "$PY" -m pytest -q -m gpu
run_step speed 90 "$PY" -m bench.speed --device cuda --csv "$OUT/speed.csv"
run_step short_run 200 "$PY" -m bench.speed.short_run --methods "$METHODS" --steps "$STEPS" --device cuda \
    --out "$OUT/runs" --csv "$OUT/short_run.csv"
if [ "$GPUS" -ge 2 ]; then
    # The data-parallel tests train on 2 gloo workers (CPU processes); a second GPU is the sign that
    # this machine is meant for data-parallel runs, so they are checked here too.
    run_step data_parallel 60 "$PY" -m pytest -q tests/bench/training/test_data_parallel.py
else
    note "data_parallel: skipped, one GPU"
fi
note "done in $(($(date +%s) - START))s; results in $OUT"
