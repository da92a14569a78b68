#!/usr/bin/env bash
# GPU in one shot (scripts/gpu_check.py): the gpu-marked tests, the kernel benchmarks, a time-boxed AMP training
# run and the 4K video figure, each step time-boxed; results (<= 8 files) in --out (default $OUT, else
# gpu_check_out/).
#   bash scripts/gpu_check.sh --out "$OUT"         # GPU machine: about 9 minutes
#   bash scripts/gpu_check.sh --dry-run --out DIR  # the same plan on the CPU with tiny sizes (about a minute)
# Interpreter: $PYTHON, else the repository's .venv/bin/python, else python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$root/.venv/bin/python" ]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHON
exec "$PYTHON" "$root/scripts/gpu_check.py" "$@"
