import os
from pathlib import Path

# One thread per process, here and in every process a test starts (Ray workers, the CLI):
# two processes spinning two intra-op threads each on a busy 2-core machine slow a test
# twentyfold, where single threads slow it in proportion to the load.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

torch.set_num_threads(1)

# Property tests draw the same examples on every run (CI must not depend on a random draw, and
# a failure found once must not replay from .hypothesis/ forever); `--hypothesis-profile=explore`
# searches afresh.
settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", deadline=None, max_examples=1000)
settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GPO_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "opinionqa" / "group_distributions.jsonl.gz").is_file():
        pytest.skip(f"shared survey data not found at {SHARED_DATA} (set GPO_DATA_DIR)")
    return SHARED_DATA
