#!/usr/bin/env bash
# One device call: issue 2's fast-vs-paper benchmark on the GPU machine's idle CPU (2 threads),
# then issue 6's gpu_check.sh. Inputs: .device/*.npz (Lite0 features, float16) and the POT wheel.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .device/whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
mkdir -p .cache/features && cp .device/fmnist.npz .device/digits.npz .cache/features/
nproc; python3 -c "import torch,numpy,ot;print(torch.__version__,numpy.__version__,ot.__version__)"
echo "=== bench_relatedness (CPU, 2 threads)"
OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2 timeout 270 python3 benchmarks/bench_relatedness.py \
  --paper-steps 30 --repeats 2 --json $OUT/bench_relatedness.json 2>&1 | tr "\r" "\n" | grep -v "paper recipe:" | tee $OUT/bench.log
echo "=== gpu_check"
mkdir -p .whl; cp .device/whl/*.whl .whl/
timeout 290 bash benchmarks/gpu_check.sh 2>&1 | tee $OUT/gpu_check.log
