"""Small things several test modules share (fixtures live in conftest.py)."""

import contextlib
import io
import logging
import os
import socket
from types import SimpleNamespace

import psutil

from gpo.cli import main


def free_port() -> int:
    """A TCP port free on every interface of this machine now (Ray binds its ports on the node's address)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def kill_processes(match) -> None:
    """Kill every process whose command line (a list of arguments) `match`es, and their
    descendants: a raylet's agents rename themselves, so name nothing to match, and orphaned
    they can spin at full CPU for a minute. Killed, not terminated: a throwaway cluster's GCS and
    raylet would spend seconds shutting down gracefully (Ray's own test Cluster kills too)."""
    mine = [p for p in psutil.process_iter(["cmdline"]) if match(p.info["cmdline"] or [])]
    for p in list(mine):
        with contextlib.suppress(psutil.NoSuchProcess):
            mine += [child for child in p.children(recursive=True) if child not in mine]
    for p in mine:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(mine, timeout=5)


def run_gpo(*args, cwd=None):
    """`gpo ARGS` run in this process (no interpreter to start: seconds per call), its exit
    status, output and log lines captured as a subprocess's would be."""
    out, err = io.StringIO(), io.StringIO()
    handler, here = logging.StreamHandler(err), os.getcwd()
    logging.getLogger().addHandler(handler)
    try:
        os.chdir(cwd or here)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(list(args))
    except SystemExit as e:  # argparse: --help, a bad argument
        status = e.code
    finally:
        os.chdir(here)
        logging.getLogger().removeHandler(handler)
    return SimpleNamespace(returncode=status, stdout=out.getvalue(), stderr=err.getvalue())
