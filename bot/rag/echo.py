"""Keeps the prompt's own text out of what users see.

Small models repeat their instructions, and injected paper text asks them to. `PromptEcho.strip`
removes every sentence of the prompt's fixed text (rules, worked example) that an answer repeats
and every run of `RUN_WORDS` words of the instructions, whatever the case, line breaks, citation
markers or punctuation. `visible_partial` does the same for a streamed answer and also holds back
a tail that is on its way to repeating the instructions, so no partial edit shows them either.
"""

from __future__ import annotations

import re
from collections import defaultdict

RUN_WORDS = 8  # this many words in a row from the instructions is an echo, not a coincidence
MIN_SENTENCE_WORDS = 4
MIN_CONTENT_WORDS = 4
COPIED_SHARE = 0.8
_FUNCTION_WORDS = frozenset(
    [
        "the",
        "and",
        "for",
        "with",
        "that",
        "this",
        "from",
        "are",
        "was",
        "were",
        "has",
        "have",
        "had",
        "its",
        "their",
        "there",
        "what",
        "which",
        "who",
        "how",
        "why",
        "when",
        "where",
        "not",
        "but",
        "can",
        "could",
        "should",
        "would",
        "will",
        "may",
        "might",
        "also",
        "than",
        "then",
        "into",
        "onto",
        "about",
        "over",
        "under",
        "such",
        "these",
        "those",
        "they",
        "them",
        "our",
        "your",
        "you",
        "one",
        "two",
        "both",
        "each",
        "more",
        "most",
    ]
)
_TOKEN = re.compile(r"\[\d+\]|\w+")  # citation markers are skipped when comparing
_CLAUSES = re.compile(r"(?<=[.!?:])\s+|\n+")
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")
_LEFT_BEHIND = re.compile(r"(?:[ \t]*\[\d+\])*[ \t]*[.,;:!?\"'”’]*")
_EMPTY_PAIR = re.compile(r"“\s*”|\"\s*\"|\(\s*\)")
_BARE_LINE = re.compile(r"^[\s\-*•.,;:!?\"'“”‘’]*$")

Token = tuple[str, int, int]  # lower-case word, start, end


def _tokens(text: str) -> list[Token]:
    return [(m.group().lower(), m.start(), m.end()) for m in _TOKEN.finditer(text) if m.group()[0] != "["]


def _words(text: str) -> tuple[str, ...]:
    return tuple(word for word, _, _ in _tokens(text))


class PromptEcho:
    def __init__(self, instructions: str, fixed_text: str, rendered_instructions: str = "") -> None:
        """`instructions`: the system prompt's template; `fixed_text`: all fixed text of the prompt
        (instructions and worked example); `rendered_instructions`: the system prompt as sent, whose
        sentences count only when repeated whole (parts of it, like the cannot-answer reply, are
        legitimate answers)."""
        sentences = {_words(part) for part in _CLAUSES.split(fixed_text)}
        sentences |= {_words(part) for part in _SENTENCES.split(rendered_instructions)}
        self._sentences: dict[str, list[tuple[str, ...]]] = defaultdict(list)
        for sentence in sentences:
            if len(sentence) >= MIN_SENTENCE_WORDS:
                self._sentences[sentence[0]].append(sentence)
        self._vocabulary = {w for w in _words(fixed_text) if _is_content(w)}
        self._instruction_words = _words(instructions)
        words = self._instruction_words
        self._runs = {words[i : i + RUN_WORDS] for i in range(len(words) - RUN_WORDS + 1)}

    def _covered(self, words: tuple[str, ...]) -> list[bool]:
        covered = [False] * len(words)
        for i, word in enumerate(words):
            for sentence in self._sentences.get(word, ()):
                if words[i : i + len(sentence)] == sentence:
                    covered[i : i + len(sentence)] = [True] * len(sentence)
            if words[i : i + RUN_WORDS] in self._runs:
                covered[i : i + RUN_WORDS] = [True] * RUN_WORDS
        return covered

    def mostly_copied(self, text: str) -> bool:
        """A paraphrase of the prompt's own text rather than an answer: at least `MIN_CONTENT_WORDS`
        content words, and `COPIED_SHARE` or more of them from the prompt's fixed text (a small
        model rewording the worked example, "Model size and training tokens should be scaled
        equally…", which `strip` cannot catch word for word)."""
        content = [w for w in _words(text) if _is_content(w)]
        if len(content) < MIN_CONTENT_WORDS:
            return False
        return sum(w in self._vocabulary for w in content) >= COPIED_SHARE * len(content)

    def strip(self, text: str) -> str:
        """`text` without what it repeats of the prompt; unchanged when it repeats nothing."""
        tokens = _tokens(text)
        covered = self._covered(tuple(word for word, _, _ in tokens))
        if not any(covered):
            return text
        pieces, position, i = [], 0, 0
        while i < len(tokens):
            if not covered[i]:
                i += 1
                continue
            start = tokens[i][1]
            while i < len(tokens) and covered[i]:
                i += 1
            end = _LEFT_BEHIND.match(text, tokens[i - 1][2])
            pieces.append(text[position:start])
            position = end.end() if end else tokens[i - 1][2]
        pieces.append(text[position:])
        return _tidy("".join(pieces))

    def visible_partial(self, text: str) -> str:
        """What of a streaming answer may be shown now: stripped, and without a tail (two words or
        more, the last possibly cut) that continues like the instructions."""
        shown = self.strip(text)
        tokens = _tokens(shown)
        words = self._instruction_words
        for k in range(min(len(tokens), RUN_WORDS), 1, -1):
            tail = [word for word, _, _ in tokens[-k:]]
            for j in range(len(words) - k + 1):
                if list(words[j : j + k - 1]) == tail[:-1] and words[j + k - 1].startswith(tail[-1]):
                    return shown[: tokens[-k][1]].rstrip()
        return shown


def _is_content(word: str) -> bool:
    return len(word) >= 3 and word not in _FUNCTION_WORDS and not word.isdigit()


def _tidy(text: str) -> str:
    text = _EMPTY_PAIR.sub("", text)
    lines = [re.sub(r"[ \t]{2,}", " ", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if not line or not _BARE_LINE.match(line)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
