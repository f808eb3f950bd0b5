import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GPO_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "opinionqa" / "group_distributions.jsonl.gz").is_file():
        pytest.skip(f"shared survey data not found at {SHARED_DATA} (set GPO_DATA_DIR)")
    return SHARED_DATA
