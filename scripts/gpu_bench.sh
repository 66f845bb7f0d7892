#!/usr/bin/env bash
# GPU figures for docs/benchmarks.md in two commands of under 6 minutes each, sized for a lease of
# 15 minutes of device time (at most 10 per command). Random weights (timing does not depend on weight
# values), bf16, one CUDA GPU (H100 or H200). Every bench writes its JSON after each cell, and every
# step runs under its own time limit, so a stopped run keeps what it measured.
#
#   STEP=1 bash scripts/gpu_bench.sh   the CUDA tests (a few seconds), then the cells that decide the
#                                      Molmo2-4B targets: 128 and 256 frames at keep 0.5 with static-cache
#                                      CUDA-graph decoding and the FlexAttention prefill (baseline and STTS
#                                      alike), then the packed-attention kernel probe behind `auto`
#   STEP=2 bash scripts/gpu_bench.sh   Qwen3-VL-4B and Qwen2.5-VL-7B at 128 frames, STTS against the peer
#                                      methods at equal budget on Molmo2-4B at 128 frames, one training step
#
# Rehearse on a CPU with tiny presets (nothing but timing is left to the GPU):
#   DEVICE=cpu DTYPE=fp32 MOLMO=micro QWEN3=qwen3-vl-micro QWEN25=qwen2.5-vl-micro FRAMES_SHORT=4 \
#   FRAMES_LONG=8 SERVING=static PREFILL=sdpa STEP=1 bash scripts/gpu_bench.sh   (and STEP=2)
# Results (JSON, printed tables, logs) go to $OUT (default runs/bench-gpu).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/bench-gpu}"
PY="${PYTHON:-python}"
STEP="${STEP:-1}"
DEVICE="${DEVICE:-cuda}"
DTYPE="${DTYPE:-bf16}"
MOLMO="${MOLMO:-molmo2-4b}"
QWEN3="${QWEN3:-qwen3-vl-4b}"
QWEN25="${QWEN25:-qwen2.5-vl-7b}"
SHORT="${FRAMES_SHORT:-128}"
LONG="${FRAMES_LONG:-256}"
SERVING="${SERVING:-compiled}"
PREFILL="${PREFILL:-flex}"
COMMON=(--device "$DEVICE" --dtype "$DTYPE" --repeats 3 --warmup 1 --max-new-tokens 8)
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"
mkdir -p "$OUT"
status=0

bench() {  # limit (s), name, then bench arguments; table and progress log go to $OUT/name.txt
    local limit=$1 name=$2 start=$SECONDS rc
    shift 2
    timeout --signal=INT "$limit" "$PY" -m stts_core.bench "${COMMON[@]}" "$@" --json "$OUT/$name.json" 2>&1 \
        | tee "$OUT/$name.txt"
    rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - start)) s (limit $limit s)" | tee -a "$OUT/steps.log"
    [ "$rc" = 0 ] || status=1
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda,
      'transformers', transformers.__version__, 'gpus', torch.cuda.device_count())"; } 2>&1 | tee "$OUT/gpu_$STEP.txt"

if [ "$STEP" = 1 ]; then
    start=$SECONDS
    timeout 90 "$PY" -m pytest -q -m gpu -rs -p no:cacheprovider tests/test_serving.py tests/test_molmo2_backend.py \
        tests/test_packing.py 2>&1 | tee "$OUT/gpu_tests.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
    echo "== gpu tests after $((SECONDS - start)) s" | tee -a "$OUT/steps.log"
    # The cells that decide the Molmo2-4B targets: decode ms/token, baseline prefill, TTFT and e2e ratios.
    bench 200 molmo2_serving --preset "$MOLMO" --serving "$SERVING" --prefill "$PREFILL" --frames "$SHORT" "$LONG" \
        --keep 0.5
    # One ViT block, stock vs packed, per attention kernel: what `auto` should pick.
    start=$SECONDS
    timeout 60 "$PY" -c "import json; from stts_core.models.molmo2.serving import suffix_probe
out = [suffix_probe('$MOLMO', frames=$SHORT, keep=k, device='$DEVICE') for k in (0.5, 0.3)]
json.dump(out, open('$OUT/suffix_probe.json', 'w'), indent=2); print(json.dumps(out, indent=2))" 2>&1 \
        | tee "$OUT/suffix_probe.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
    echo "== suffix probe after $((SECONDS - start)) s" | tee -a "$OUT/steps.log"
elif [ "$STEP" = 2 ]; then
    bench 100 qwen3_vl --preset "$QWEN3" --frames "$SHORT" --keep 0.5
    bench 100 qwen2_5_vl --preset "$QWEN25" --frames "$SHORT" --keep 0.5
    bench 120 molmo2_methods --preset "$MOLMO" --serving "$SERVING" --prefill "$PREFILL" --frames "$SHORT" --keep 0.5 \
        --scorer learned evs vidcom2 divprune fastv
    bench 60 molmo2_train --preset "$MOLMO" --train --grad-checkpoint --frames "$SHORT" --keep 0.5
else
    echo "STEP must be 1 or 2" >&2
    exit 2
fi
echo "results in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$status"
