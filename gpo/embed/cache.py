"""On-disk embedding cache: parquet shards of questions plus a manifest, never recomputed twice.

A cache folder is keyed by everything the numbers depend on (model weights digest, prompt
template, pooling, dtype, the questions and options). Inside it:
- manifest.json: that identity, the embedding dimension, the shard layout and each written
  shard's SHA-256;
- shard-00000.parquet, ...: the points of `shard_size` consecutive questions, written to a
  temp file and renamed, so a shard is either whole or absent.
A rerun computes only shards that are missing; a shard whose bytes do not match its checksum
(a flipped bit anywhere), or that cannot be read or does not match the manifest (rows,
question ids, dimension, finite values), is reported and recomputed, never used. A manifest
that cannot be read, or is not a manifest (another JSON value, keys missing), is rebuilt from
the shards whose contents match the layout. Reading
memory-maps each shard and views its values without a copy. Writers hold the cache's lock
(gpo/lock.py), so two runs never fill one cache at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    index: int
    questions: range  # question indices it holds
    points: range  # point indices it holds


@dataclass
class EmbeddingCache:
    root: Path
    identity: dict  # what the numbers depend on
    qids: list[str]
    n_options: list[int]
    shard_size: int = 64

    @classmethod
    def open(cls, cache_dir: str | Path, identity: dict, qids: list[str], n_options: list[int], shard_size: int = 64):
        key = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
        cache = cls(Path(cache_dir) / key, identity, list(qids), [int(n) for n in n_options], shard_size)
        cache.root.mkdir(parents=True, exist_ok=True)
        manifest = cache.root / "manifest.json"
        expected = cache.layout()
        try:
            found = json.loads(manifest.read_text()) if manifest.is_file() else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            found = "unreadable (cut off or corrupted)"
        if found is not None and not (isinstance(found, dict) and set(expected) <= set(found)
                                      and isinstance(found.get("checksums"), dict)):
            why = found if isinstance(found, str) else "damaged (not the mapping of a manifest, or keys missing)"
            log.warning("%s: %s; rebuilding it from the shards that match this data", manifest, why)
            cache._rebuild()
            return cache
        if found is not None and {k: found.get(k) for k in expected} != expected:
            log.warning("%s does not match this data; its shards will be recomputed", manifest)
            for shard in cache.root.glob("shard-*.parquet"):
                shard.unlink()
            found = None
        if found is None:
            _atomic_write_text(manifest, json.dumps({**expected, "dim": None, "checksums": {}}, indent=1))
        return cache

    def _rebuild(self) -> None:
        """A new manifest holding the checksums of the shards whose contents match the layout
        (questions, options, finite values, one dimension); the others are left to recompute."""
        checksums, dim = {}, None
        for shard in self.shards:
            vectors = self._contents(shard, dim) if self.path(shard).is_file() else None
            if vectors is not None:
                checksums[str(shard.index)], dim = _sha256(self.path(shard)), vectors.shape[1]
        _atomic_write_text(self.root / "manifest.json", json.dumps({**self.layout(), "dim": dim, "checksums": checksums}, indent=1))
        log.warning("%s: kept %d of %d shards", self.root, len(checksums), len(self.shards))

    def layout(self) -> dict:
        """What the shards must match: the identity, pooling and the questions' layout."""
        return {"pooling": "mean", **self.identity, "n_questions": len(self.qids),
                "n_points": sum(self.n_options), "shard_size": self.shard_size,
                "qids_digest": hashlib.sha1("\n".join(self.qids).encode()).hexdigest()[:16]}

    @property
    def shards(self) -> list[Shard]:
        starts = np.concatenate([[0], np.cumsum(self.n_options)]).astype(int)
        out = []
        for i, q0 in enumerate(range(0, len(self.qids), self.shard_size)):
            q1 = min(q0 + self.shard_size, len(self.qids))
            out.append(Shard(i, range(q0, q1), range(starts[q0], starts[q1])))
        return out

    def path(self, shard: Shard) -> Path:
        return self.root / f"shard-{shard.index:05d}.parquet"

    def missing(self) -> list[Shard]:
        """Shards to compute: absent, unreadable or not matching the manifest."""
        return [s for s in self.shards if self._read(s) is None]

    def write(self, shard: Shard, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        assert vectors.shape[0] == len(shard.points), (vectors.shape, len(shard.points))
        qids = [self.qids[q] for q in shard.questions for _ in range(self.n_options[q])]
        options = [o for q in shard.questions for o in range(self.n_options[q])]
        table = pa.table({
            "qid": pa.array(qids, pa.string()),
            "option": pa.array(options, pa.int32()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1]),
        })
        tmp = self.path(shard).with_suffix(f".tmp{os.getpid()}")
        pq.write_table(table, tmp)
        checksum = _sha256(tmp)
        os.replace(tmp, self.path(shard))
        # the checksum is recorded after the shard is in place: a crash in between leaves a shard
        # without one, which is recomputed, never trusted
        found = self._manifest()
        found["dim"] = vectors.shape[1]
        found.setdefault("checksums", {})[str(shard.index)] = checksum
        _atomic_write_text(self.root / "manifest.json", json.dumps(found, indent=1))

    def _manifest(self) -> dict:
        return json.loads((self.root / "manifest.json").read_text())

    def _read(self, shard: Shard) -> np.ndarray | None:
        path = self.path(shard)
        if not path.is_file():
            return None
        manifest = self._manifest()
        if manifest.get("checksums", {}).get(str(shard.index)) != _sha256(path):
            log.warning("%s: its bytes do not match the checksum in the manifest (corrupted, or written by an "
                        "interrupted run); recomputing it", path)
            return None
        return self._contents(shard, manifest.get("dim"))

    def _contents(self, shard: Shard, dim: int | None) -> np.ndarray | None:
        """A shard's vectors if they match the layout (and `dim`, unless None), else None."""
        path = self.path(shard)
        try:
            table = pq.read_table(path, memory_map=True)
            column = table.column("embedding").combine_chunks()
            width = column.type.list_size
            vectors = column.values.to_numpy(zero_copy_only=True).reshape(-1, width)
            qids = table.column("qid").to_pylist()
        except (pa.ArrowException, OSError, KeyError, AttributeError) as e:
            log.warning("%s: unreadable (%s); recomputing it", path, e)
            return None
        expected = [self.qids[q] for q in shard.questions for _ in range(self.n_options[q])]
        if qids != expected or (dim is not None and width != dim) or not np.isfinite(vectors).all():
            log.warning("%s: does not match the manifest (questions, dimension or values); recomputing it", path)
            return None
        return vectors

    def load(self) -> np.ndarray:
        """All embeddings (P, d) in point order; every shard must be complete."""
        parts = [self._read(s) for s in self.shards]
        missing = [s.index for s, p in zip(self.shards, parts) if p is None]
        if missing:
            raise RuntimeError(f"{self.root}: shards {missing} are missing; run extraction first")
        return np.concatenate(parts)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
