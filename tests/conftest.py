import atexit
import logging
import os
import sys
from pathlib import Path

# One thread per process, here and in every process a test starts (Ray workers, the CLI):
# two processes spinning two intra-op threads each on a busy 2-core machine slow a test
# twentyfold, where single threads slow it in proportion to the load.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _end_without_teardown():
    """The suite's process ends here, after the atexit handlers registered since (Ray's shutdown,
    Arrow's S3 finalisation, pytest's temp dirs: they run first, in reverse order), with pytest's
    own exit status. Interpreter teardown is skipped: this process has hosted several Ray
    sessions, and Ray ends a process whose thread is still inside a Ray call when a session
    shuts down or another starts (tests/test_ray_restart.py reproduces it on the installed Ray;
    ray-project/ray#31145); one CI run crashed so (SIGSEGV) after every test had passed. Nothing
    a test can observe happens after this point."""
    if _EXIT_STATUS:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[0])


_EXIT_STATUS: list[int] = []  # set when the session finishes; a process that never gets there exits as usual
atexit.register(_end_without_teardown)  # first registered, so last to run


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS.append(int(exitstatus))


# `make test` hands whole modules to its two xdist workers in collection order
# (--no-loadscope-reorder). The long ones go first, so the many quick ones even out the two
# workers' ends; xdist's own order, by test count, left a long module of two tests for last.
# (test_tp.py runs after them, alone: its mark says why.)
LONGEST_FIRST = ["test_distributed_cluster", "test_in_context", "test_distributed", "test_sweep", "test_cluster", "test_cli",
                 "test_train", "test_cloud"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

torch.set_num_threads(1)

# Property tests draw the same examples on every run of the same selection (CI must not depend
# on a random draw, and a failure found once must not replay from .hypothesis/ forever); a file
# run alone may draw others, as Hypothesis also mines constants from the modules loaded.
# `--hypothesis-profile=explore` searches afresh.
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


@pytest.fixture
def writes(monkeypatch):
    """Indices of the cache shards written, in order (extraction must write each exactly once)."""
    from gpo.embed.cache import EmbeddingCache

    seen = []
    real = EmbeddingCache.write

    def counting(self, shard, vectors):
        seen.append(shard.index)
        real(self, shard, vectors)

    monkeypatch.setattr(EmbeddingCache, "write", counting)
    return seen


@pytest.fixture
def requeued(caplog):
    """requeued(): whether extraction has logged a failed replica whose unfinished shards went
    back in the queue (a kill in a test really hit work in flight)."""
    import re

    pattern = re.compile(r"replica \d+ failed .*; [1-9]\d* shard\(s\) requeued")
    return lambda: any(pattern.search(r.getMessage()) for r in caplog.records)


@pytest.fixture(scope="module")
def local_ray():
    """A private local Ray for one test module (never another process's Ray on this machine)."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def lock_holder():
    """lock_holder(folder): a context holding `folder`'s lock (gpo/lock.py) in another process,
    whose pid it yields."""
    import contextlib
    import subprocess

    @contextlib.contextmanager
    def hold(folder):
        code = ("import sys, time; from gpo.lock import exclusive\n"
                f"with exclusive({str(folder)!r}, 'x'):\n    print('held', flush=True); time.sleep(600)")
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "held"
            yield child.pid
        finally:
            child.kill()
            child.wait()
    return hold
