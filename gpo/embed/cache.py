"""On-disk embedding cache: parquet shards of questions plus a manifest, never recomputed twice.

A cache folder is keyed by everything the numbers depend on (model weights digest, prompt
template, pooling, dtype, the questions and options). Inside it:
- manifest.json: that identity, the embedding dimension and the shard layout;
- shard-00000.parquet, ...: the points of `shard_size` consecutive questions, written to a
  temp file and renamed, so a shard is either whole or absent.
A rerun computes only shards that are missing; a shard that cannot be read or does not
match the manifest (rows, question ids, dimension, finite values) is reported and
recomputed, never used. Reading memory-maps each shard and views its values without a copy.
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
        expected = cache.manifest(dim=None)
        if manifest.is_file():
            found = json.loads(manifest.read_text())
            if {k: v for k, v in found.items() if k != "dim"} != {k: v for k, v in expected.items() if k != "dim"}:
                log.warning("%s does not match this data; its shards will be recomputed", manifest)
                for shard in cache.root.glob("shard-*.parquet"):
                    shard.unlink()
                _atomic_write_text(manifest, json.dumps(expected, indent=1))
        else:
            _atomic_write_text(manifest, json.dumps(expected, indent=1))
        return cache

    def manifest(self, dim) -> dict:
        return {**self.identity, "pooling": "mean", "dim": dim, "n_questions": len(self.qids),
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
        os.replace(tmp, self.path(shard))
        self._set_dim(vectors.shape[1])

    def _set_dim(self, dim: int) -> None:
        manifest = self.root / "manifest.json"
        found = json.loads(manifest.read_text())
        if found.get("dim") != dim:
            _atomic_write_text(manifest, json.dumps({**found, "dim": dim}, indent=1))

    def _read(self, shard: Shard) -> np.ndarray | None:
        path = self.path(shard)
        if not path.is_file():
            return None
        try:
            table = pq.read_table(path, memory_map=True)
            column = table.column("embedding").combine_chunks()
            dim = column.type.list_size
            vectors = column.values.to_numpy(zero_copy_only=True).reshape(-1, dim)
            qids = table.column("qid").to_pylist()
        except (pa.ArrowException, OSError, KeyError, AttributeError) as e:
            log.warning("%s: unreadable (%s); recomputing it", path, e)
            return None
        expected = [self.qids[q] for q in shard.questions for _ in range(self.n_options[q])]
        want_dim = json.loads((self.root / "manifest.json").read_text()).get("dim")
        if qids != expected or (want_dim and dim != want_dim) or not np.isfinite(vectors).all():
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


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
