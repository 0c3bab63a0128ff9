"""Shared bench helpers: the real corpora, and a persistent full index reused across bench scripts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PAPERBOT_SHARED", ROOT.parent / "shared")) / "data"
OUT = ROOT / "bench" / "out"
HF_FILES = sorted((SHARED / "hf_daily_papers").glob("hf_daily_papers_slim_part*.jsonl"))
ARXIV_LISTINGS = sorted((SHARED / "arxiv").glob("arxiv_cs_*.jsonl"))
FULL_INDEX_DIR = OUT / "full"

sys.path.insert(0, str(ROOT))
from bot.retrieval.embedding import OFFLINE_ENV  # noqa: E402  (needs ROOT on sys.path)

for name, value in OFFLINE_ENV.items():
    os.environ.setdefault(name, value)
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT / "data" / "cache" / "tiktoken"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def load_all_papers() -> list:  # type: ignore[type-arg]
    from bot.ingest.sources import parse_path

    papers = []
    for path in [*HF_FILES, *ARXIV_LISTINGS]:
        papers.extend(parse_path(path).papers)
    return papers


async def open_full_index(embedder):  # type: ignore[no-untyped-def]
    """The 10,524-paper index (all HF slim files + the three arXiv listings), built once and reused."""
    from bot.core.config import TokenizerSettings
    from bot.ingest.pipeline import Ingestor
    from bot.retrieval.index.edge import EdgePaperIndex

    index = EdgePaperIndex(FULL_INDEX_DIR / "qdrant")
    await index.ensure_collection(embedder.dimensions)
    if await index.count_papers() < 10_000:
        from tqdm import tqdm

        papers = load_all_papers()
        with tqdm(total=len(papers), unit="paper", file=sys.stderr, desc="building the bench index") as bar:
            await Ingestor(index, embedder, TokenizerSettings()).ingest(papers, progress=bar.update)
        await index.flush()
    return index
