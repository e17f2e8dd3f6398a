#!/usr/bin/env bash
# GPU readiness check of wsolbench (see benchmarks/gpu_check.py for what it measures).
#
#   bash benchmarks/gpu_check.sh                          # on a CUDA machine: install, then the full check (< 8 min on an H200)
#   bash benchmarks/gpu_check.sh --device cpu --tiny      # the dry run on CPU (what CI tests)
#   bash benchmarks/gpu_check.sh --no-install --json gpu.json
#
# The machine is expected to have torch, torchvision, timm, h5py, numba, pluggy, pyyaml, tabulate and
# matplotlib installed and no network: the project is installed without dependencies and without
# build isolation. PYTHON selects the interpreter (default: python3). Other arguments go to gpu_check.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
install=1
args=()
for arg in "$@"; do
    if [[ "$arg" == "--no-install" ]]; then install=0; else args+=("$arg"); fi
done
if (( install )); then
    "$PYTHON" -m pip install --quiet --no-deps --no-build-isolation -e .
fi
exec "$PYTHON" benchmarks/gpu_check.py ${args[@]+"${args[@]}"}
