"""Survey data: loaders for each upstream format, all producing one canonical table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

from gpo.data.globalopinionqa import load_globalopinionqa_csv
from gpo.data.jsonl import load_jsonl
from gpo.data.opinionqa import load_opinionqa_release
from gpo.data.schema import COLUMNS
from gpo.errors import DataError


def load_table(path: str | Path, on_bad_rows: str = "skip") -> pd.DataFrame:
    """The canonical table from a file or folder, by its form:

    - a folder: the official OpinionQA release (`human_resp/<survey>/...`);
    - `*.jsonl` / `*.jsonl.gz`: the long JSONL format (OpinionQA or GlobalOpinionQA);
    - `*.csv`: the official GlobalOpinionQA CSV;
    - `*.parquet`: a canonical table written earlier by `gpo data`.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found (set data.source, or GPO_DATA_DIR for the shared data folder)")
    if path.is_dir():
        return load_opinionqa_release(path, on_bad_rows)
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return load_jsonl(path, on_bad_rows)
    if name.endswith(".csv"):
        return load_globalopinionqa_csv(path, on_bad_rows)
    if name.endswith(".parquet"):
        return read_table(path)
    raise DataError(f"{path}: unknown data format (expected a folder, .jsonl[.gz], .csv or .parquet)")


def read_table(path: Path) -> pd.DataFrame:
    """A canonical table written by `gpo data --out`."""
    try:
        table = pd.read_parquet(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable parquet file ({str(e).splitlines()[0]})") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing} of the canonical table (written by `gpo data --out`)")
    return table
