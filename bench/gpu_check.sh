#!/usr/bin/env bash
# HF vs DeepSpeed (kernel injection off/on) on a lent GPU machine: tokens/s and peak memory,
# one table (bench/gpu_check.py). One command, a few minutes, nothing downloaded there.
#
# That machine has torch (CUDA) and transformers but no deepspeed and no network. Prepare here,
# once, the wheels it needs (deepspeed is a pure-Python wheel; its dependencies for Python 3.12):
#   pip wheel --no-deps deepspeed==0.19.8 -w .whl
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#       -d .whl hjson py-cpuinfo ninja msgpack einops psutil pydantic pydantic-core annotated-types typing-inspection
# then run it there with the device tool, carrying .whl: `bash bench/gpu_check.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import deepspeed" 2>/dev/null; then
    pip install -q --no-index --find-links .whl deepspeed
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 540 python bench/gpu_check.py "$@"
