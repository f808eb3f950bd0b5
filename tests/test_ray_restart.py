"""Why the suite's process ends without interpreter teardown (tests/conftest.py): Ray itself
ends a process whose thread is still inside a Ray call when its session shuts down or a new one
starts: an exit with "the language frontend accesses the Ray's worker after it is shutdown", or
SIGABRT in Ray's native code (ray-project/ray#31145; both seen here on the installed Ray, in a
child process).
The suite's process hosts several Ray sessions, with Tune's and the embedding driver's threads;
with no teardown after the tests, nothing can run on after a session's native threads."""

import subprocess
import sys

import pytest

RESTARTS = """
import threading, time
import ray

@ray.remote(num_cpus=0)
def sleep():
    time.sleep(99999)

def waiter():  # a thread of this session, blocked inside Ray when the session ends
    try:
        ray.wait([sleep.remote()], num_returns=1)
    except Exception:
        pass

for i in range(8):
    ray.init(num_cpus=1, include_dashboard=False, address="local")
    threading.Thread(target=waiter, daemon=True).start()
    time.sleep(1)
    ray.shutdown()
    print("session", i, "ended", flush=True)
"""


@pytest.mark.slow
@pytest.mark.ray
def test_ray_aborts_a_process_that_restarts_it_under_a_blocked_thread():
    out = subprocess.run([sys.executable, "-c", RESTARTS], capture_output=True, text=True, timeout=600)
    assert out.returncode != 0 and "session 7 ended" not in out.stdout, (out.returncode, out.stdout[-500:], out.stderr[-2000:])
