#!/usr/bin/env bash
# Run the benchmark suite and compare its ratios with benchmarks/baseline.json (see benchmarks/README.md).
# CI: `bash benchmarks/compare.sh` with the venv's python on PATH; arguments go to compare.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec python benchmarks/compare.py "$@"
