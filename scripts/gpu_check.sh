#!/usr/bin/env bash
# The project's GPU check as one prepared script, within 8 minutes on one GPU:
#   1. the `gpu` tests (tests/gpu: engines, one-process trainer with the recipes' settings, eval, data tools on CUDA)
#   2. 20 GRPO steps of a SmolLM2-sized random model and of the tiny VLM (benchmarks/gpu_grpo.py), printing step
#      times and generated tokens/s
#
# On a machine with the package index (once):   bash scripts/gpu_check.sh --prepare
#   -> .whl/        wheels of what a stock CUDA + PyTorch image lacks (Python 3.12, manylinux x86-64)
#   -> .gpu-cache/  the tiny test models and the SmolLM2-shaped config + tokenizer (no weights)
# On the GPU machine (no network; carry .whl and .gpu-cache):   bash scripts/gpu_check.sh
# Output: what it prints, and $OUT/gpu_check.log when $OUT is set.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [[ "${1:-}" == "--prepare" ]]; then
  set -e
  PIP=${PIP:-.venv/bin/pip}
  rm -rf .whl && mkdir -p .whl
  # Versions tested on the CPU (pyproject.toml); pure-Python unless noted.
  "$PIP" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d .whl \
    math-verify==0.9.0 latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2 \
    pydantic==2.14.3 pydantic_core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 \
    typing_extensions==4.16.0 gguf==0.19.0 ImageHash==4.3.2 PyWavelets==1.9.0 websockets==17.4
  rm -rf .gpu-cache && mkdir -p .gpu-cache
  PHASERL_CACHE=$PWD/.gpu-cache .venv/bin/python -c "
from phaserl.models import resolve_model_path
for name in ('tiny:llama', 'tiny:qwen2_5_vl'):
    print(resolve_model_path(name))"
  PHASERL_CACHE=$PWD/.gpu-cache .venv/bin/python benchmarks/gpu_grpo.py --prepare
  du -sh .whl .gpu-cache
  exit 0
fi

LOG=${OUT:+$OUT/gpu_check.log}
exec > >(tee ${LOG:-/dev/null}) 2>&1
if [ -d .whl ] && [ -z "${GPU_CHECK_NO_WHEELS:-}" ]; then  # (set it to try the script in a venv that has all)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PHASERL_CACHE=$PWD/.gpu-cache PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
"$PY" - <<'EOF'
import torch, transformers, accelerate
print(f"torch {torch.__version__}  transformers {transformers.__version__}  accelerate {accelerate.__version__}")
print("cuda:", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
EOF
status=0
echo "== 1. gpu tests"
timeout 270 "$PY" -m pytest -q -m gpu tests/gpu -p no:cacheprovider -o addopts="" -x -rs || status=1
echo "== 2. 20 GRPO steps: SmolLM2-sized random model, tiny VLM"
timeout 180 "$PY" benchmarks/gpu_grpo.py --steps "${GPU_CHECK_STEPS:-20}" || status=1
echo "gpu_check: $([ $status = 0 ] && echo passed || echo FAILED)"
exit $status
