"""When no LLM answers: the sentences of the top sources that best match the question, cited."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.rag.packing import Source

EXTRACTIVE_LABEL = "The language model is unavailable right now, so here are the most relevant passages:"
UNUSABLE_LABEL = "The language model gave no usable answer, so here are the most relevant passages:"
BUSY_LABEL = "The language model is busy with other questions, so here are the most relevant passages:"
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    {
        "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how", "in",
        "is", "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "what", "which", "who",
        "why", "with", "paper", "papers",
    }
)  # fmt: skip


def _terms(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def extractive_answer(
    question: str, sources: Sequence[Source], *, max_sentences: int = 3, label: str = EXTRACTIVE_LABEL
) -> str:
    wanted = _terms(question)
    scored: list[tuple[float, int, int, str]] = []
    for source in sources:
        for position, sentence in enumerate(_SENTENCE.split(source.text)):
            sentence = sentence.strip()
            if len(sentence) < 20:
                continue
            overlap = len(wanted & _terms(sentence))
            # ties: stronger source first, earlier sentence first
            scored.append(
                (overlap - 0.01 * source.number - 0.001 * position, source.number, position, sentence)
            )
    best = sorted(scored, reverse=True)[:max_sentences]
    lines = [f"> {sentence} [{number}]" for _, number, _, sentence in best]
    return label + "\n" + "\n".join(lines)
