#!/usr/bin/env bash
# One GPU slot, one call: train the paper-size models, evaluate them and time inference.
#
#   bash benchmarks/gpu_run.sh OUT [BUDGET_S]
#
# Run from the repository root on the GPU machine with .gpu/ (benchmarks/gpu_prepare.sh)
# carried. Steps, inside a wall-clock budget the script enforces itself (default 540 s):
#   1. check the GPU (nvidia-smi, torch.cuda) and install the carried wheels into /tmp/site;
#   2. train npgd-t10k1 (configs/gpu-paper.toml, NPGD_SECONDS, default 300 s) and resnet-k10
#      (configs/gpu-resnet.toml, RESNET_SECONDS, default 150 s), each stopping at its time
#      budget with a validated checkpoint (npgd-train --max-seconds);
#   3. benchmarks/gpu_bench.py: validation SNR/SSIM on held-out Colin27 and inference times of
#      151x200x100 and 256x320x256 volumes, fp32 and bf16, with and without torch.compile, as
#      TFLOP/s and fraction of the chip's bf16 peak;
#   4. at most 8 files in OUT: npgd-t10k1.safetensors, resnet-k10.safetensors, the two training
#      logs, timings.json and run.log.
# Rehearsal on a CPU (no GPU needed; the project's venv python):
#   GPU_RUN_REHEARSAL=1 NPGD_CONFIG=configs/smoke.toml RESNET_CONFIG=configs/smoke.toml \
#   NPGD_SECONDS=15 RESNET_SECONDS=10 EVAL_SECONDS=30 bash benchmarks/gpu_run.sh /tmp/gpu-out 60
set -euo pipefail
OUT=${1:?usage: gpu_run.sh OUT [BUDGET_S]}
BUDGET=${2:-540}
START=$(date +%s)
PY=${PYTHON:-python3}
NPGD_CONFIG=${NPGD_CONFIG:-configs/gpu-paper.toml}
RESNET_CONFIG=${RESNET_CONFIG:-configs/gpu-resnet.toml}
NPGD_SECONDS=${NPGD_SECONDS:-300}
RESNET_SECONDS=${RESNET_SECONDS:-150}
RESERVE=${EVAL_SECONDS:-90}  # kept for step 3
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
left() { echo $((BUDGET - ($(date +%s) - START))); }
say() { echo "[gpu_run $(($(date +%s) - START)) s] $*"; }

say "1. GPU and packages"
if [ -z "${GPU_RUN_REHEARSAL:-}" ]; then
  nvidia-smi -L
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .gpu/whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
  "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.cuda.get_device_name())"
  DEVICE=cuda
else
  PY=${PYTHON:-.venv/bin/python}
  export PYTHONPATH=$PWD
  DEVICE=cpu
fi
WORK=$(mktemp -d)
if [ -f .gpu/cache.tar.gz ]; then
  mkdir -p "$WORK/cache" && tar -xzf .gpu/cache.tar.gz -C "$WORK/cache"
  export NPGD_DATA_CACHE=$WORK/cache
fi
DATA=${GPU_RUN_DATA:-$PWD/.gpu/data}
VALIDATION=$DATA/ch2.nii.gz
[ -f "$VALIDATION" ] || VALIDATION=/usr/share/mricron/templates/ch2.nii.gz
config() {  # the config, with the carried data's paths where .gpu/data exists
  if [ -d "$DATA" ]; then
    sed -e "s#\.\./shared/data/#$DATA/#g" -e "s#/usr/share/mricron/templates/#$DATA/#g" "$1" \
      > "$WORK/$2.toml"
  else
    cp "$1" "$WORK/$2.toml"
  fi
  echo "$WORK/$2.toml"
}

say "2. training (budget left $(left) s)"
train() {  # name config seconds
  local seconds=$3
  [ "$seconds" -gt "$(($(left) - RESERVE))" ] && seconds=$(($(left) - RESERVE))
  if [ "$seconds" -lt 5 ]; then say "no time left to train $1"; return; fi
  "$PY" -m npgd_recon.cli.train "$(config "$2" "$1")" --out "$WORK/$1" --device "$DEVICE" \
    --max-seconds "$seconds" --no-progress || say "training $1 failed"
  if [ -f "$WORK/$1/model.safetensors" ]; then
    cp "$WORK/$1/model.safetensors" "$OUT/$1.safetensors"
    cp "$WORK/$1/log.csv" "$OUT/$1-log.csv"
  fi
}
train npgd-t10k1 "$NPGD_CONFIG" "$NPGD_SECONDS"
train resnet-k10 "$RESNET_CONFIG" "$RESNET_SECONDS"

say "3. evaluation and timings (budget left $(left) s)"
if [ "$(left)" -gt 10 ]; then
  timeout "$(($(left) - 5))" "$PY" benchmarks/gpu_bench.py --models "$OUT" --device "$DEVICE" \
    --out "$OUT/timings.json" --validation "$VALIDATION" \
    ${GPU_RUN_REHEARSAL:+--rehearsal} || say "benchmark stopped early"
fi
rm -rf "$WORK"
say "done: $(ls "$OUT" | tr '\n' ' ')"
