#!/usr/bin/env bash
# GPU check (under 6 minutes, no network, inputs generated on the fly):
#   1. task_relatedness with device="cuda" (and "cpu" for comparison) on a moderate task,
#   2. the W1 estimators on the GPU against exact OT,
#   3. benchmarks/bench_scaling.py --gpu (n up to 1M) under time caps (270 s in all),
#   4. logme, h_score, regularized_h_score, knn_accuracy on cuda vs cpu (n=50k, d=2048),
#   5. one reference head related to targets of 1k ... 1M rows (batched solver on cuda).
# Run from the repository root:  bash benchmarks/gpu_check.sh
# Needs numpy, scipy, scikit-learn, torch (CUDA), tqdm and POT. The GPU image has all
# but POT: first run `bash benchmarks/fetch_gpu_wheels.sh` on a machine with pip, and
# carry the git-ignored .whl/ folder; this script installs it into /tmp/taskrel-site.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)

if ! $PY -c "import ot" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  echo "installing carried wheels: $(ls .whl)"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/taskrel-site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/taskrel-site"
fi

$PY - <<'PYEOF' || exit 2
import importlib, sys
missing = []
for mod, pkg in [("numpy", "numpy"), ("scipy", "scipy"), ("sklearn", "scikit-learn"),
                 ("torch", "torch"), ("tqdm", "tqdm"), ("ot", "POT")]:
    try:
        m = importlib.import_module(mod)
        print(f"{pkg} {getattr(m, '__version__', '?')}")
    except ImportError as exc:
        missing.append(f"{pkg} ({exc})")
if missing:
    print("MISSING: " + ", ".join(missing))
    print("fix: run `bash benchmarks/fetch_gpu_wheels.sh` where pip works, carry .whl/")
    sys.exit(1)
import torch
if not torch.cuda.is_available():
    print("MISSING: a CUDA GPU visible to torch " + torch.__version__)
    sys.exit(1)
print("python", sys.version.split()[0], "| torch", torch.__version__, "| GPU",
      torch.cuda.get_device_name(0))
import taskrel
print("taskrel", taskrel.__version__, "from", taskrel.__file__)
PYEOF

stage() {  # stage NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo; echo "=== $name (cap ${limit}s, t=$(( $(date +%s) - START ))s) ==="
  timeout "$limit" "$@"; local rc=$?
  [ $rc -eq 124 ] && echo "!!! $name stopped at its ${limit}s cap"
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && echo "!!! $name failed (exit $rc)"
  return 0
}

stage "engine on cuda" 50 $PY benchmarks/gpu_check.py engine
stage "W1 estimators" 60 $PY benchmarks/gpu_check.py w1
stage "bench_scaling --gpu: W1 (sinkhorn) and LogME" 60 $PY benchmarks/bench_scaling.py \
  --gpu --ns 1000 10000 100000 1000000 --dims 512 2048 --methods w1 logme --run-timeout 40
stage "bench_scaling --gpu: task_relatedness" 100 $PY benchmarks/bench_scaling.py \
  --gpu --ns 1000 10000 100000 1000000 --dims 512 2048 --methods relatedness --run-timeout 40
stage "scores on cuda vs cpu" 60 $PY benchmarks/gpu_check.py scores
stage "relate: one head, targets 1k..1M (batched solver)" 150 $PY benchmarks/gpu_check.py relate
echo; echo "=== done in $(( $(date +%s) - START ))s ==="
