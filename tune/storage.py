"""Where a study's results live: a local folder, a shared filesystem, or an object store.

    storage: runs/sweeps                                   # a folder (relative: to the project)
    storage: /mnt/shared/sweeps                            # NFS or any filesystem every node mounts
    storage: s3://bucket/sweeps                            # object stores through pyarrow filesystems
    storage: s3://bucket/sweeps?endpoint_override=minio:9000&scheme=http
    storage: gs://bucket/sweeps

Tune writes trial checkpoints there and restores a trial from there on whichever node it
runs next; final runs upload their checkpoints and results there, and the study table is
written there. Credentials come from the usual environment (AWS_ACCESS_KEY_ID, ...,
GOOGLE_APPLICATION_CREDENTIALS) of every node.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs


@dataclass(frozen=True)
class Storage:
    uri: str  # an absolute local path or a filesystem URI (query parameters configure the filesystem)

    @classmethod
    def at(cls, location: str, root: Path) -> Storage:
        """`location` as given in a study: a URI, or a local path (relative to `root`)."""
        if "://" in location:
            return cls(location.rstrip("/"))
        return cls(str((root / Path(location).expanduser()).resolve()))

    @property
    def is_local(self) -> bool:
        return "://" not in self.uri

    def child(self, *parts: str) -> Storage:
        base, _, query = self.uri.partition("?")
        return Storage("/".join([base.rstrip("/"), *parts]) + (f"?{query}" if query else ""))

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """The pyarrow filesystem and this location's path within it."""
        return pafs.FileSystem.from_uri(self.uri)

    def __str__(self) -> str:
        return self.uri.partition("?")[0]

    def exists(self) -> bool:
        fs, path = self.filesystem()
        return fs.get_file_info(path).type != pafs.FileType.NotFound

    def read_parquet(self) -> pd.DataFrame:
        fs, path = self.filesystem()
        with fs.open_input_file(path) as f:
            return pd.read_parquet(f)

    def write_parquet(self, table: pd.DataFrame) -> None:
        """Written whole or not at all: an object is replaced in one put, a local file by a rename."""
        fs, path = self.filesystem()
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        buffer = io.BytesIO()
        table.to_parquet(buffer)
        tmp = path + ".tmp" if self.is_local else path
        with fs.open_output_stream(tmp) as f:
            f.write(buffer.getvalue())
        if tmp != path:
            fs.move(tmp, path)

    def put(self, local: Path) -> None:
        """Copy a local file, or a folder's files, to this location."""
        fs, path = self.filesystem()
        if local.is_dir():
            fs.create_dir(path, recursive=True)
        else:
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        pafs.copy_files(str(local), path, destination_filesystem=fs)

    def get(self, local: Path) -> bool:
        """Replace the local folder `local` with a copy of this location; False if there is nothing here."""
        shutil.rmtree(local, ignore_errors=True)
        if not self.exists():
            return False
        local.mkdir(parents=True)
        fs, path = self.filesystem()
        pafs.copy_files(path, str(local), source_filesystem=fs)
        return True
