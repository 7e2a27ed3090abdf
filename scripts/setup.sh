#!/usr/bin/env bash
# One-command setup: installs sweet_lightning (editable) with its test tools.
#
# torch is installed first and on purpose: pip resolving a bare "torch" on a machine
# without one pulls a multi-GB CUDA build. On a machine without an NVIDIA GPU we ask for
# the CPU build pinned below (set TORCH_SPEC to change it; point pip at a CPU wheel index
# with PIP_EXTRA_INDEX_URL if your default index only serves CUDA builds). An existing
# torch >= 2.2 is kept as it is.
#
#   bash scripts/setup.sh            # core + dev/test tools
#   EXTRAS=dev,slurm,optuna bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-dev}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if "$PYTHON" -c "import torch, sys; v = tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2]); sys.exit(v < (2, 2))" 2>/dev/null; then
  echo "setup: keeping installed torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "$PYTHON" -m pip install "torch>=2.2"
else
  echo "setup: no GPU found, installing CPU torch ($TORCH_SPEC)"
  "$PYTHON" -m pip install "$TORCH_SPEC"
fi
"$PYTHON" -m pip install -e ".[$EXTRAS]"
echo "setup: done. Try: python launch.py --help"
