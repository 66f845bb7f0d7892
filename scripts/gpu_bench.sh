#!/usr/bin/env bash
# The GPU table of docs/benchmarks.md in one go: the Molmo2-4B architecture with random weights
# (timing does not depend on weight values), bf16, one CUDA GPU (H100 or H200).
#   tests    : the CUDA tests of the serving paths and GPU preprocessing (pytest -m gpu)
#   serving  : frames 128 256 x keep 0.5 with static-cache CUDA-graph decoding and the FlexAttention
#              LLM prefill (docs/serving.md), baseline and STTS alike
#   probe    : one ViT block, stock vs packed per attention back end (docs/serving.md), suffix_probe.json
#   inference: frames 64 128 256 x keep 1.0 0.5 0.3, 3 timed baseline/STTS pairs per cell, stock serving
#   training : frames 64 128 at keep 0.5, one forward + backward step, activation checkpointing
# Inference runs go through `python -m stts_core.bench` with its --serving/--prefill flags; every run's
# record carries prefill MFU and decode bandwidth utilisation.
# Results (JSON, HTML chart, printed table, progress log) go to $OUT, or runs/bench-gpu when OUT is unset.
# Parts run in that order (the newest figures first). Overrides: PYTHON, ATTENTION (packed attention
# back end, default auto); PARTS (default "tests serving probe inference training"); SERVING / PREFILL
# (serving of the inference part: eager|static|compiled, sdpa|flex; default eager sdpa = the stock
# path); SERVING_FRAMES, SERVING_KEEPS (default "128 256", "0.5");
# PRESET, DEVICE, DTYPE, FRAMES, TRAIN_FRAMES only for a dry run elsewhere (e.g. PRESET=micro DEVICE=cpu DTYPE=fp32).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/bench-gpu}"
PY="${PYTHON:-python}"
ATTN="${ATTENTION:-auto}"
PARTS=" ${PARTS:-tests serving probe inference training} "
read -r -a FRAMES <<< "${FRAMES:-64 128 256}"
read -r -a TRAIN_FRAMES <<< "${TRAIN_FRAMES:-64 128}"
read -r -a SERVING_FRAMES <<< "${SERVING_FRAMES:-128 256}"
read -r -a SERVING_KEEPS <<< "${SERVING_KEEPS:-0.5}"
COMMON=(--preset "${PRESET:-molmo2-4b}" --device "${DEVICE:-cuda}" --dtype "${DTYPE:-bf16}"
        --repeats 3 --warmup 1 --new-tokens 8)
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"
mkdir -p "$OUT"
status=0
part() { [[ "$PARTS" == *" $1 "* ]]; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda,
      'transformers', transformers.__version__, 'gpus', torch.cuda.device_count())"; } 2>&1 | tee "$OUT/gpu.txt"

run() {  # name, module, then bench arguments; the table and the progress log both go to $OUT/name.txt
    local name=$1 module=$2 start=$SECONDS rc
    shift 2
    "$PY" -m "$module" "${COMMON[@]}" "$@" --json "$OUT/$name.json" --html "$OUT/$name.html" 2>&1 \
        | tee "$OUT/$name.txt"
    rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - start)) s"
    return "$rc"
}
SERVE=stts_core.bench

if part tests; then
    start=$SECONDS
    "$PY" -m pytest -q -m gpu tests/test_serving.py tests/test_molmo2_backend.py -rs 2>&1 | tee "$OUT/serving_gpu_tests.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
    echo "== serving GPU tests after $((SECONDS - start)) s"
fi

if part serving; then
    run gpu_serving "$SERVE" --serving compiled --prefill flex --attention "$ATTN" \
        --frames "${SERVING_FRAMES[@]}" --keep "${SERVING_KEEPS[@]}" || status=1
fi

if part probe; then
    start=$SECONDS
    "$PY" -c "import json, sys; from stts_core.models.molmo2.serving import suffix_probe
out = [suffix_probe('${PRESET:-molmo2-4b}', frames=f, keep=k, device='${DEVICE:-cuda}') for f, k in ((128, 0.5), (128, 0.3))]
json.dump(out, open('$OUT/suffix_probe.json', 'w'), indent=2); print(json.dumps(out, indent=2))" 2>&1 \
        | tee "$OUT/suffix_probe.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
    echo "== ViT suffix probe after $((SECONDS - start)) s"
fi

if part inference; then
    if ! run gpu_inference "$SERVE" --serving "${SERVING:-eager}" --prefill "${PREFILL:-sdpa}" --attention "$ATTN" \
            --frames "${FRAMES[@]}" --keep 1.0 0.5 0.3; then
        status=1
        if [ "$ATTN" = auto ]; then
            # A cell failed for a reason other than memory: retry with the plain SDPA row layout (no compiler).
            run gpu_inference_rows "$SERVE" --serving "${SERVING:-eager}" --prefill "${PREFILL:-sdpa}" \
                --attention rows --frames "${FRAMES[@]}" --keep 1.0 0.5 0.3
        fi
    fi
fi

if part training; then
    run gpu_train stts_core.bench --attention "$ATTN" --train --grad-checkpoint --frames "${TRAIN_FRAMES[@]}" \
        --keep 0.5 || status=1
fi
echo "results in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$status"
