import os
from pathlib import Path

import pytest

# One model cache for the whole test session (tiny models are built once, then loaded from disk).
os.environ.setdefault("PHASERL_CACHE", str(Path.home() / ".cache" / "phaserl"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture
def shared_data() -> Path:
    path = SHARED / "data"
    if not path.exists():
        pytest.skip("../shared/data is not present")
    return path
