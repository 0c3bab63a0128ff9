"""A disk cache of MiniLM vectors for bench scripts: embedding the ~10.5k bench papers takes many
minutes on 2 shared cores, and the retrieval studies need the same vectors again and again.

`CachedEmbedder` wraps the real `LocalEmbedder` (same vectors: it only skips texts it has seen) and
keeps every document and query vector it computes in `bench/out/vectors/` (gitignored), keyed by
the sha1 of the text and the kind (documents through torch, queries through ONNX, as the bot does).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common import OUT

CACHE_DIR = OUT / "vectors"


class VectorCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._vectors: dict[str, np.ndarray] = {}
        self._dirty = False
        if path.exists():
            data = np.load(path)
            keys, matrix = data["keys"], data["vectors"]
            self._vectors = {str(k): matrix[i] for i, k in enumerate(keys)}

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode()).hexdigest()

    def get(self, text: str) -> np.ndarray | None:
        return self._vectors.get(self.key(text))

    def put(self, text: str, vector: Sequence[float] | np.ndarray) -> None:
        self._vectors[self.key(text)] = np.asarray(vector, dtype=np.float32)
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(self._vectors), dtype="U40")
        matrix = np.stack(list(self._vectors.values())) if self._vectors else np.zeros((0, 384), np.float32)
        partial = self.path.with_suffix(".partial.npz")
        np.savez(partial, keys=keys, vectors=matrix)
        partial.replace(self.path)
        self._dirty = False

    def __len__(self) -> int:
        return len(self._vectors)


class CachedEmbedder:
    """The `Embedder` protocol over a `LocalEmbedder`, reading and filling the vector caches."""

    def __init__(self, inner: Any, cache_dir: Path = CACHE_DIR) -> None:
        self.inner = inner
        self.dimensions = inner.dimensions
        self.name = inner.name
        self.documents = VectorCache(cache_dir / "documents.npz")
        self.queries = VectorCache(cache_dir / "queries.npz")

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        missing = list(dict.fromkeys(t for t in texts if self.documents.get(t) is None))
        if missing:
            for text, vector in zip(missing, await self.inner.embed_documents(missing), strict=True):
                self.documents.put(text, vector)
            self.documents.save()
        return [self.documents.get(t).tolist() for t in texts]  # type: ignore[union-attr]

    async def embed_query(self, text: str) -> list[float]:
        cached = self.queries.get(text)
        if cached is None:
            vector = await self.inner.embed_query(text)
            self.queries.put(text, vector)
            return vector
        return [float(x) for x in cached]

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Many query vectors at once (the ONNX encoder in batches), cached."""
        missing = list(dict.fromkeys(t for t in texts if self.queries.get(t) is None))
        encoder = self.inner.query_encoder
        for start in range(0, len(missing), 64):
            batch = missing[start : start + 64]
            vectors = encoder.encode(batch) if encoder is not None else np.asarray(self.inner.encode(batch))
            for text, vector in zip(batch, vectors, strict=True):
                self.queries.put(text, vector)
        if missing:
            self.queries.save()
        return np.stack([self.queries.get(t) for t in texts])  # type: ignore[misc]

    def save(self) -> None:
        self.documents.save()
        self.queries.save()

    async def aclose(self) -> None:
        self.save()
