#!/usr/bin/env bash
# Download, on a machine with pip access, the wheels that benchmarks/gpu_check.sh needs
# on the GPU machine (Python 3.12, x86-64, no network there) into .whl/ (git-ignored).
# The GPU image already has numpy, scipy, scikit-learn, torch and tqdm; only POT is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
POT_VERSION=${POT_VERSION:-0.9.7.post1}
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "POT==${POT_VERSION}"
ls -la .whl
