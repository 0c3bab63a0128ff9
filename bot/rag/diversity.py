"""At most a few excerpts from one section of a paper, so an answer's k excerpts are not all neighbours.

A long section with many overlapping passages on one topic (a method section, a results table and its
discussion) can fill every excerpt slot, and a fact stated elsewhere in the paper (the introduction's
summary of the same number) is never shown. The search ranking is kept; a passage over its section's
cap gives its slot to the next passage from elsewhere, and only when nothing else is left are the
skipped ones taken back, in their order.
"""

from __future__ import annotations

from collections import Counter

from bot.retrieval.index import ChunkHit


def section_key(hit: ChunkHit) -> tuple[str, str]:
    """One paper's one section; a title + abstract chunk (no section) is its paper's "abstract"."""
    return hit.paper.paper_id, str(hit.extra.get("section") or hit.extra.get("kind") or "abstract")


def cap_per_section(hits: list[ChunkHit], *, limit: int, per_section: int) -> list[ChunkHit]:
    """The best `limit` hits, at most `per_section` from any one section while others remain.

    `hits` is best first; 0 means no cap (the first `limit`)."""
    if per_section <= 0:
        return hits[:limit]
    taken: list[ChunkHit] = []
    skipped: list[ChunkHit] = []
    per_key: Counter[tuple[str, str]] = Counter()
    for hit in hits:
        key = section_key(hit)
        if per_key[key] < per_section:
            per_key[key] += 1
            taken.append(hit)
        else:
            skipped.append(hit)
        if len(taken) == limit:
            return taken
    chosen = {id(hit) for hit in [*taken, *skipped[: limit - len(taken)]]}
    return [hit for hit in hits if id(hit) in chosen]
