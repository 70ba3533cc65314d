#!/usr/bin/env bash
# On the lent GPU machine, after scripts/device_setup.sh: the GPU benchmarks issues 10 and 11 ask for, each under its
# own time limit (one that hangs cannot eat the call) and each writing its table to $OUT as it runs, in the order
# given. SmolLM2's shape with random weights stands in for the real model (speed depends on the shape; the real
# weights are over what one call carries), so one call with .device/wheels is enough:
#   bash scripts/device_setup.sh && bash scripts/device_benches.sh hoe hoe-graph rl rl-graph
# Items: hoe, hoe-graph (bench_hoe with dynamic decoding / CUDA graphs), rl, rl-graph (bench_rl on its default 26M
# Llama; rl-graph samples moalign's rollouts with CUDA-graph decoding), rl-smollm2 (bench_rl on the SmolLM2 shape).
# LIMIT_SCALE=0.5 halves every limit.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/moalign-device-out}
SHAPE=${SHAPE:-/root/smollm2-shape}
THREADS=${THREADS:-16}
export PYTHONUNBUFFERED=1  # a table's rows reach $OUT as they are printed, even if the step is cut off
mkdir -p "$OUT"

step() {  # step NAME LIMIT_SECONDS COMMAND...
  local name=$1 limit
  limit=$(awk -v s="${LIMIT_SCALE:-1}" -v l="$2" 'BEGIN { printf "%d", s * l }')
  shift 2
  echo "== $name: limit ${limit}s: $*"
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.md"
  echo "== $name: exit ${PIPESTATUS[0]} (124: hit the limit)"
}

shape() {
  [ -f "$SHAPE/config.json" ] || $PY benchmarks/random_model.py "$SHAPE" --shape smollm2-135m
}

HOE_METHODS=merged_lora,hoe_mixed,hoe_unfused,mod_k3
for item in "$@"; do
  case $item in
    hoe) shape && step bench_hoe 100 $PY benchmarks/bench_hoe.py --model "$SHAPE" --rounds 3 \
           --threads "$THREADS" --methods $HOE_METHODS ;;
    hoe-graph) shape && step bench_hoe_graph 100 $PY benchmarks/bench_hoe.py --model "$SHAPE" --rounds 3 \
           --threads "$THREADS" --methods $HOE_METHODS --decoding cuda_graph ;;
    rl) step bench_rl 150 $PY benchmarks/bench_rl.py --steps 8 --rounds 3 --warmup-rounds 1 --threads "$THREADS" \
           --mixed-precision bf16 ;;
    rl-graph) step bench_rl_graph 150 $PY benchmarks/bench_rl.py --steps 8 --rounds 3 --warmup-rounds 1 \
           --threads "$THREADS" --mixed-precision bf16 --engine decode --decoding cuda_graph ;;
    rl-smollm2) shape && step bench_rl_smollm2 150 $PY benchmarks/bench_rl.py --model "$SHAPE" --steps 8 --rounds 2 \
           --warmup-rounds 1 --threads "$THREADS" --mixed-precision bf16 ;;
    *) echo "unknown item $item (hoe, hoe-graph, rl, rl-graph, rl-smollm2)" >&2; exit 2 ;;
  esac
done
