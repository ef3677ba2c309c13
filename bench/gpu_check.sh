#!/usr/bin/env bash
# The GPU checks of kgem in one script (under 8 minutes on a bare GPU machine): the CUDA tests and the GPU benchmark,
# printing JSON. Run it from the repository root on a machine with an NVIDIA GPU:
#
#   bash bench/gpu_check.sh [DATA_ROOT]      # DATA_ROOT holds fb15k237/{train,valid,test}.txt ($DATASET: another)
#
# Python: $PYTHON if set; else python3 when its torch already sees a GPU (an image with a CUDA build of torch);
# else a virtual environment .venv-gpu with torch from PyPI (PyPI's Linux wheel is the CUDA build). kgem itself is
# used from src/ (PYTHONPATH), so nothing is installed into an environment that has torch already.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=${1:-../shared/datasets}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 KGEM_CACHE_DIR=${KGEM_CACHE_DIR:-/tmp/kgem-cache}

sees_gpu() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }
if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
elif sees_gpu python3; then
    PY=python3
else
    python3 -m venv .venv-gpu
    .venv-gpu/bin/pip install -q "torch>=2.2" numpy pandas tqdm pyyaml safetensors pytest hypothesis
    PY=.venv-gpu/bin/python
fi
for module in numpy pandas tqdm yaml safetensors pytest hypothesis; do
    "$PY" -c "import $module" 2>/dev/null || { echo "{\"status\": \"failed\", \"error\": \"python lacks $module\"}"; exit 1; }
done
"$PY" -c 'import json, torch; print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda,
    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))'

# the CUDA tests (skipped where there is no GPU), with the device tests that run everywhere
set +e
"$PY" -m pytest -q -p no:cacheprovider -m cuda tests/test_devices.py tests/test_inference.py 2>&1 | tail -15
TESTS=${PIPESTATUS[0]}
set -e
echo "{\"cuda_tests_exit_code\": $TESTS}"

timeout 360 "$PY" bench/gpu_speed.py --data-root "$DATA_ROOT" --dataset "${DATASET:-fb15k237}" --epochs 2
