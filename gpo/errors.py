"""User-facing errors: one line that names the file, row and field, then a non-zero exit."""

from __future__ import annotations

import logging
import sys
from typing import Callable


class GPOError(Exception):
    """An error the user can act on; the CLI prints it as one line and exits with status 2."""

    status = 2
    label = "error: "


class DataError(GPOError):
    """Survey data that cannot be read: a missing file, wrong columns, or rows rejected by policy."""


class ConfigError(GPOError):
    """A configuration file or override that does not match the config dataclasses."""


def require(ok: bool, key: str, expected: str, value) -> None:
    """One config check: `key: expected <expected>, got <value>` unless `ok`."""
    if not ok:
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")


class Interrupted(GPOError):
    """A stop the user asked for (Ctrl-C), after the work so far was saved; the message says how to continue."""

    status = 130
    label = ""


def run_command(prog: str, command: Callable[[], None], resume_hint: str) -> int:
    """Run a command-line entry point: progress and logs on stderr, and any error the user can
    act on as one line `PROG: error: ...` with a non-zero exit status, never a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        command()
    except GPOError as e:
        print(f"{prog}: {e.label}{e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {resume_hint}", file=sys.stderr)
        return Interrupted.status
    return 0
