"""Fixtures for the vLLM tests (run in .venv-vllm by scripts/test_vllm.sh; skipped where vllm is missing).

Engines are session-scoped: a vLLM engine takes tens of seconds to start on 2 CPU cores."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

vllm = pytest.importorskip("vllm")


def _built(name: str, build) -> str:
    """A model folder built once under $PHASERL_CACHE (atomic rename, like phaserl.models' built-ins)."""
    from phaserl.models import cache_dir

    target = cache_dir() / "models" / name
    if not (target / "config.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
        try:
            build(tmp)
            tmp.rename(target)
        except OSError:
            pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    from phaserl.models import resolve_model_path

    return resolve_model_path("builtin:smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_vl_path() -> str:
    """A random Qwen2.5-VL whose text head_dim is 32: vLLM's CPU attention has no kernel for the
    default tiny model's 16."""
    from phaserl.testing.tiny import build_tiny_qwen2_5_vl

    return _built("tiny--qwen2_5_vl-h128", lambda out: build_tiny_qwen2_5_vl(out, hidden=128))


@pytest.fixture(scope="session")
def smollm2_hf(smollm2_path):
    from phaserl.models import load_model

    return load_model(smollm2_path)


@pytest.fixture(scope="session")
def smollm2_engine(smollm2_path, smollm2_hf):
    from phaserl.rollout.vllm import VLLMEngine

    engine = VLLMEngine(
        smollm2_path,
        processor=smollm2_hf.processor,
        tokenizer=smollm2_hf.tokenizer,
        dtype="float32",
        kv_cache_gib=1,
        max_model_len=2048,
    )
    yield engine
    engine.close()
