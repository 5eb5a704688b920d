import os
import sys
from pathlib import Path

import pytest

# One model cache for the whole test session (tiny models are built once, then loaded from disk).
os.environ.setdefault("PHASERL_CACHE", str(Path.home() / ".cache" / "phaserl"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[2] / "shared"
# Test helpers that live in tests/ (math_is_equiv, judge_pairs, fake_openai_server), importable from the subfolders.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def shared_data() -> Path:
    path = SHARED / "data"
    if not path.exists():
        pytest.skip("../shared/data is not present")
    return path
