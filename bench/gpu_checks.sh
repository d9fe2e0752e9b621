#!/usr/bin/env bash
# Every GPU check in one call, for a session lent the device machine (its image has torch, transformers,
# peft and accelerate, but no trl or bitsandbytes). Prepare the wheels here first, once:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl bitsandbytes==0.50.2 liger-kernel typer rich pydantic pydantic-core pyyaml
# then run, with carry [".whl"]:   bash bench/gpu_checks.sh
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/src || exit 1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -m pytest -q -rs -m gpu tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.log"
python3 bench/gpu_throughput.py 2>&1 | tee "$OUT/gpu_throughput.log"
python3 bench/plan_accuracy.py 2>&1 | tee "$OUT/plan_accuracy_gpu.log"
gpus=$(nvidia-smi -L | wc -l)
if [ "$gpus" -gt 1 ]; then  # the FSDP/DeepSpeed presets and scaling need at least two devices
  python3 -m pytest -q -rs -m gpu tests/test_distributed_presets.py 2>&1 | tee "$OUT/distributed_gpu.log"
  python3 bench/scaling.py --procs 1 "$gpus" 2>&1 | tee "$OUT/scaling_gpu.log"
fi
