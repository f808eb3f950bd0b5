"""Progress bars that stay readable in logs: frequent on a terminal, every 10 s otherwise.

TQDM_DISABLE=1 turns them off; it is read at each bar (tqdm reads it once, at import), so a
process can turn its bars off after importing them (sweep trials do)."""

import os
import sys

from tqdm.auto import tqdm


def progress(**kwargs) -> tqdm:
    interactive = sys.stderr.isatty()
    off = kwargs.pop("disable", False) or os.environ.get("TQDM_DISABLE", "0") not in ("", "0")
    return tqdm(mininterval=0.2 if interactive else 10.0, disable=off, **kwargs)
