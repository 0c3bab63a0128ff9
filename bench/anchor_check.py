"""Which recorded answers would read other round-2 excerpts if the question's best chunk were not kept.

For each answer of an `answer_eval.py` records file whose draft steered retrieval (round 2's query is
not the question alone), the two recorded queries are searched again over the 48 seed papers and
round 2's excerpts are fused both ways: reciprocal-rank fusion alone, and with the question's best
chunk kept among the k (`bot.rag.iter_retgen.anchor_to_question(…, shown=k)`). Round 1 does not
depend on the difference, so an answer whose excerpts are the same both ways was read from the same
excerpts by either version, and only the listed ones can differ. No model is needed.

.venv/bin/python bench/anchor_check.py bench/out/dev_s10.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from answer_eval import build_seed_index


async def main(lines: list[str]) -> None:
    from bot.core.config import RagSettings
    from bot.rag.diversity import cap_per_section
    from bot.rag.iter_retgen import MAX_RETRIEVAL_QUERY_TOKENS, SECTION_CAP_OVERFETCH, anchor_to_question
    from bot.retrieval.embedding import LocalEmbedder
    from bot.retrieval.search import SearchService

    rag = RagSettings()
    k, fetch = rag.top_k, rag.top_k * SECTION_CAP_OVERFETCH
    embedder = LocalEmbedder()
    steered = changed = 0
    with tempfile.TemporaryDirectory() as tmp:
        index = await build_seed_index(embedder, Path(tmp) / "qdrant")
        search = SearchService(index, embedder)
        try:
            for line in lines:
                record = json.loads(line)
                trace = record.get("trace") or []
                if len(trace) < 2 or trace[1]["query"] == trace[0]["query"]:
                    continue
                steered += 1
                question, draft = [
                    await search.search_chunks(
                        step["query"], limit=fetch, max_query_tokens=MAX_RETRIEVAL_QUERY_TOKENS
                    )
                    for step in trace[:2]
                ]
                excerpts = [
                    [
                        h.paper.title
                        for h in cap_per_section(
                            anchor_to_question(draft, question, limit=fetch, shown=shown),
                            limit=k,
                            per_section=rag.max_per_section,
                        )
                    ]
                    for shown in (None, k)
                ]
                if excerpts[0] != excerpts[1]:
                    changed += 1
                    print(f"{record['kind']}: {record['q']}")
                    print(f"  fusion alone:      {excerpts[0]}")
                    print(f"  best chunk kept:   {excerpts[1]}")
        finally:
            await index.close()
    print(f"{changed}/{steered} answers whose draft steered retrieval read other round-2 excerpts")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("records", type=Path, help="an answer_eval.py records file")
    asyncio.run(main(parser.parse_args().records.read_text().splitlines()))
