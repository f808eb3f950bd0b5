"""Small things several test modules share (fixtures live in conftest.py)."""

import contextlib
import io
import logging
import os
import socket
from types import SimpleNamespace

from gpo.cli import main


def free_port() -> int:
    """A TCP port free on every interface of this machine now (Ray binds its ports on the node's address)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


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
