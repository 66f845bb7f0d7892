#!/usr/bin/env bash
# The GPU table of docs/benchmarks.md in one go: the Molmo2-4B architecture with random weights
# (timing does not depend on weight values), bf16, one CUDA GPU (H100 or H200).
#   inference: frames 64 128 256 x keep 1.0 0.5 0.3, 3 timed baseline/STTS pairs per cell
#   training : frames 64 128 at keep 0.5, one forward + backward step, activation checkpointing
# Results (JSON, HTML chart, printed table, progress log) go to $OUT, or runs/bench-gpu when OUT is unset.
# Overrides: PYTHON, ATTENTION (packed attention back end, default auto); PRESET, DEVICE, DTYPE,
# FRAMES, TRAIN_FRAMES only for a dry run elsewhere (e.g. PRESET=micro DEVICE=cpu DTYPE=fp32).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/bench-gpu}"
PY="${PYTHON:-python}"
ATTN="${ATTENTION:-auto}"
read -r -a FRAMES <<< "${FRAMES:-64 128 256}"
read -r -a TRAIN_FRAMES <<< "${TRAIN_FRAMES:-64 128}"
COMMON=(--preset "${PRESET:-molmo2-4b}" --device "${DEVICE:-cuda}" --dtype "${DTYPE:-bf16}"
        --repeats 3 --warmup 1 --new-tokens 8)
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"
mkdir -p "$OUT"
status=0

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda,
      'transformers', transformers.__version__, 'gpus', torch.cuda.device_count())"; } 2>&1 | tee "$OUT/gpu.txt"

run() {  # name, then bench arguments; the table and the progress log both go to $OUT/name.txt
    local name=$1 start=$SECONDS rc
    shift
    "$PY" -m stts_core.bench "${COMMON[@]}" "$@" --json "$OUT/$name.json" --html "$OUT/$name.html" 2>&1 \
        | tee "$OUT/$name.txt"
    rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - start)) s"
    return "$rc"
}

if ! run gpu_inference --attention "$ATTN" --frames "${FRAMES[@]}" --keep 1.0 0.5 0.3; then
    status=1
    if [ "$ATTN" = auto ]; then
        # A cell failed for a reason other than memory: retry with the plain SDPA row layout (no compiler).
        run gpu_inference_rows --attention rows --frames "${FRAMES[@]}" --keep 1.0 0.5 0.3
    fi
fi
run gpu_train --attention "$ATTN" --train --grad-checkpoint --frames "${TRAIN_FRAMES[@]}" --keep 0.5 || status=1
echo "results in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$status"
