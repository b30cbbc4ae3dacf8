#!/usr/bin/env bash
# The GPU machine's check in one command (bench/README.md, "GPU check"):
#   bash bench/gpu_check.sh                 # on a GPU machine: under 10 minutes on one H200
#   bash bench/gpu_check.sh --tiny          # the same rows on the CPU, tiny
#   bash bench/gpu_check.sh --out FILE      # where the markdown report goes (gpu_check.md)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$(dirname "$here")${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" "$here/gpu_check.py" "$@"
