"""Progress bars that stay readable in logs: frequent on a terminal, every 10 s otherwise."""

import sys

from tqdm.auto import tqdm


def progress(**kwargs) -> tqdm:
    interactive = sys.stderr.isatty()
    return tqdm(mininterval=0.2 if interactive else 10.0, **kwargs)
