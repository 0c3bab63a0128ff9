"""Does a summary say what the paper says? A lexical support check of each sentence against the source.

Deterministic and cheap (no model). A sentence is *supported* by the source (title and abstract) when
- every specific term in it occurs in the source: each number (by value, so "97,000" is "97K"), each
  acronym, each name or term written with a capital inside the sentence; and
- at least `MIN_SUPPORT` of its content words occur in the source. Content words leave out stop
  words and the words any summary uses about any paper ("paper", "propose", "improves"). Words
  match after light normalization: case, possessives, a crude suffix stemmer, Unicode forms ("²").
  A hyphenated compound is one term that must occur as a compound or as adjacent words ("state of
  the art"); when its first part changes what the rest means ("multi-agent", "non-", "self-") it
  is a specific term. An acronym of the source stands for the words it abbreviates ("RL" ↔
  "reinforcement learning", both ways).

Thresholds are measured on 5,711 real Hugging Face papers (bench/summary_grounding.py): their own
`ai_summary` keeps 0.956 of its sentences, another paper's summary is rejected 0.9995 of the time
(0.95 for the most similar other paper). The check is lexical: it cannot verify a paraphrase (and
drops it), nor see a negation or a swapped relation between words the abstract does use.

`check_summary` drops the sentences the source does not support, the ones made of the prompt's own
fixed text (its rules or worked example) rather than of the source, and repeated ones; the first
line keeps its "TL;DR: " prefix and a later line its short label ("Key contribution: ").
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from bot.core.words import STOP_WORDS

CHECK_VERSION = "g1"  # part of the summary cache key: change it with the rules, and summaries are made again
MIN_SUPPORT = 0.7  # share of a sentence's content terms that must occur in the source
ECHO_SHARE = 0.5  # this much of a sentence from the prompt's text, and more than from the source: an echo
COPY_JACCARD = 0.8  # content terms this similar to one sentence of the prompt: a copy of it
REPEAT_JACCARD = 0.75  # content terms this similar to a sentence kept before: a repeat
MAX_ACRONYM_WORDS = 5

DropReason = Literal["unsupported", "prompt_echo", "repeated", "no_content"]

TLDR_PREFIX = "TL;DR: "
_LABEL = re.compile(r"^\s*(?:[-*•]\s*)?(?:\*\*)?([A-Za-z][A-Za-z ]{0,30}?:)(?:\*\*)?\s+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[^a-z\s])")
_TOKEN = re.compile(r"[^\W_]+(?:[-'./,][^\W_]+)*")
_JOINER = re.compile(r"[-'./,]")
_POSSESSIVE = re.compile(r"['’]s\b")
_DIGIT = re.compile(r"\d")
_NUMBER = re.compile(
    r"(?<![^\W\d_])(\d+(?:[.,]\d+)*)(?:\s*-?\s*(k|m|b|thousand|million|billion|trillion)(?![^\W_]))?",
    re.IGNORECASE,
)
_THOUSANDS = re.compile(r"^\d{1,3}(?:,\d{3})+$")
_MULTIPLIER = {"k": 1e3, "m": 1e6, "b": 1e9}
_MULTIPLIER |= {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
_PLACEHOLDER = re.compile(r"\{[A-Za-z_]+\}")
_SUFFIXES = sorted(
    (
        "ational", "ization", "isation", "ation", "ating", "ative", "ated", "ate", "ator", "ement",
        "ment", "ness", "ity", "ing", "ive", "ion", "ably", "ibly", "ally", "er", "ed", "ly", "al", "ic",
    ),
    key=len,
    reverse=True,
)  # fmt: skip
_STOP = STOP_WORDS | {"across", "ours", "without"}


def stem(word: str) -> str:
    """A crude stemmer: 'proposes', 'proposed', 'proposal' → 'propos'; 'studies', 'study' → 'studi'."""
    if (word.endswith("ies") and len(word) > 4) or word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        word = word[:-1]
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if len(word) >= 4 and word.endswith("e"):
        word = word[:-1]
    if word.endswith("y") and len(word) >= 4:
        word = word[:-1] + "i"
    return word


# Words any summary may use about any paper (compared by stem): they neither support nor contradict it.
_GENERIC = frozenset(
    stem(word)
    for word in (
        "paper", "work", "study", "summary", "tl", "dr", "tldr", "key", "contribution", "propose",
        "present", "introduce", "new", "novel", "approach", "method", "author", "researcher", "show",
        "demonstrate", "find", "finding", "result", "use", "make", "allow", "enable", "provide",
        "achieve", "help", "call", "name", "base", "way", "first", "main", "overall", "specifically",
        "particular", "include", "performance", "perform", "outperform", "significant", "significantly",
        "substantial", "substantially", "superior", "better", "best", "improve", "improvement",
        "enhance", "reveal", "highlight", "compare", "comparison", "multiple", "various", "different",
        "diverse", "effective", "effectively", "existing", "current", "traditional", "conventional",
        "prior", "previous", "comprehensive", "address", "challenge", "limitation", "capability",
        "ability", "task", "strong", "robust", "leading", "despite", "due", "like", "across", "wide",
        "range", "variety"
    )
)  # fmt: skip


# The first part of a compound that changes what the rest means: "multi-agent" is not "agent".
_SCOPE_PREFIXES = frozenset(
    ("multi", "single", "non", "self", "cross", "zero", "few", "semi", "un", "anti", "inter", "intra", "co")
)


def _is_content(word: str) -> bool:
    return word not in _STOP and len(word) > 1 and not word.isdigit() and stem(word) not in _GENERIC


def normalize(text: str) -> str:
    """Unicode compatibility forms ('²' → '2', 'ﬁ' → 'fi'), curly apostrophes, possessives out."""
    return _POSSESSIVE.sub("", unicodedata.normalize("NFKC", text).replace("’", "'"))


def _is_acronym(token: str) -> bool:
    """'RL', 'LLMs', 'MoE': two or more capitals."""
    return sum(ch.isupper() for ch in token) >= 2


def _acronym_key(token: str) -> str:
    key = token.lower()
    return key[:-1] if key.endswith("s") and len(key) > 2 else key


def _initials(words: list[str]) -> dict[str, tuple[int, int]]:
    """The initials of every run of 2..MAX_ACRONYM_WORDS words → (start, end) of the first such run."""
    runs: dict[str, tuple[int, int]] = {}
    for start in range(len(words)):
        for end in range(start + 2, min(start + MAX_ACRONYM_WORDS, len(words)) + 1):
            runs.setdefault("".join(w[0] for w in words[start:end]), (start, end))
    return runs


def _numbers(text: str) -> list[tuple[str, float | None]]:
    """Each number of the text as written (thousands separators out) and its value ('40K' → 40000)."""
    found = []
    for match in _NUMBER.finditer(text):
        digits, multiplier = match.group(1), _MULTIPLIER.get((match.group(2) or "").lower(), 1.0)
        if _THOUSANDS.match(digits):
            digits = digits.replace(",", "")
        for number in digits.split(","):
            try:
                value: float | None = round(float(number) * multiplier, 6)
            except ValueError:  # '1.2.3'
                value = None
            found.append((number, value))
    return found


@dataclass(frozen=True)
class _Word:
    text: str  # as written
    lower: str
    compound: int  # index of the token it is part of
    specific: bool


def _words(text: str) -> list[_Word]:
    words = []
    for position, token in enumerate(_TOKEN.findall(text)):
        for part in _JOINER.split(token):
            if not part or part.isdigit():
                continue  # numbers are checked by value
            specific = bool(_DIGIT.search(part)) or _is_acronym(part) or (position > 0 and part[0].isupper())
            words.append(_Word(part, part.lower(), position, specific))
    return words


@dataclass(frozen=True)
class Source:
    """The text a summary must stay within, indexed for the checks."""

    text: str

    @cached_property
    def _normal(self) -> str:
        return normalize(self.text)

    @cached_property
    def words(self) -> list[str]:
        return [w.lower for w in _words(self._normal)]

    @cached_property
    def forms(self) -> frozenset[str]:
        """Each word, each token as written and joined ('multi-agent', 'multiagent'), in lower case."""
        tokens = [t.lower() for t in _TOKEN.findall(self._normal)]
        return frozenset([*self.words, *tokens, *(_JOINER.sub("", t) for t in tokens)])

    @cached_property
    def bigrams(self) -> frozenset[tuple[str, str]]:
        stems = [stem(w) for w in self.words]
        return frozenset(itertools.pairwise(stems))

    @cached_property
    def stems(self) -> frozenset[str]:
        return frozenset(stem(w) for w in self.words)

    @cached_property
    def numbers(self) -> frozenset[str | float | None]:
        """Each number as written and by value."""
        return frozenset(item for pair in _numbers(self._normal) for item in pair)

    @cached_property
    def acronyms(self) -> frozenset[str]:
        return frozenset(_acronym_key(w.text) for w in _words(self._normal) if _is_acronym(w.text))

    @cached_property
    def initials(self) -> frozenset[str]:
        alphabetic = [w for w in self.words if w[0].isalpha()]
        content = [w for w in alphabetic if w not in _STOP]
        return frozenset(_initials(alphabetic)) | frozenset(_initials(content))

    def has_word(self, word: _Word) -> bool:
        if word.lower in self.forms or stem(word.lower) in self.stems:
            return True
        return _is_acronym(word.text) and (
            _acronym_key(word.text) in self.acronyms or _acronym_key(word.text) in self.initials
        )

    def has_compound(self, parts: list[str]) -> bool:
        """'multi-agent' as written, joined, or as adjacent words."""
        if "".join(parts) in self.forms or "-".join(parts) in self.forms:
            return True
        stems = [stem(p) for p in parts]
        if stems[0] == "multi":  # 'multi-step' for 'multiple steps'
            stems[0] = stem("multiple")
        return all(pair in self.bigrams for pair in itertools.pairwise(stems))


@dataclass(frozen=True)
class SentenceCheck:
    text: str
    content: frozenset[str]  # the content terms (stems; a compound's parts joined by '-')
    support: float  # share of the content terms found in the source
    echo: float  # share found in the prompt's fixed text
    missing: tuple[str, ...]  # specific terms (numbers, acronyms, names) the source does not have

    @property
    def supported(self) -> bool:
        return bool(self.content) and not self.missing and self.support >= MIN_SUPPORT


def check_sentence(sentence: str, source: Source, prompt: Source | None = None) -> SentenceCheck:
    text = normalize(sentence)
    words = _words(text)
    missing = [n for n, value in _numbers(text) if n not in source.numbers and value not in source.numbers]

    # Words that an acronym of the source abbreviates ("reinforcement learning" when it says RL).
    abbreviated: set[int] = set()
    alphabetic = [i for i, w in enumerate(words) if w.lower[0].isalpha()]
    for sequence in (alphabetic, [i for i in alphabetic if words[i].lower not in _STOP]):
        for initials, (start, end) in _initials([words[i].lower for i in sequence]).items():
            if initials in source.acronyms:
                abbreviated.update(sequence[start:end])

    tokens: dict[int, list[int]] = {}  # token index → its words (a compound has several)
    for i, word in enumerate(words):
        if word.specific and not (i in abbreviated or source.has_word(word)):
            missing.append(word.text)
        tokens.setdefault(word.compound, []).append(i)

    content: set[str] = set()
    supported: set[str] = set()
    in_prompt: set[str] = set()
    for members in tokens.values():
        terms = [i for i in members if _is_content(words[i].lower)]
        if not terms:
            continue
        parts = [words[i].lower for i in members]
        term = "-".join(stem(words[i].lower) for i in terms)
        content.add(term)
        if (
            all(i in abbreviated for i in terms)
            or (len(members) == 1 and source.has_word(words[terms[0]]))
            or (len(members) > 1 and source.has_compound(parts))
            or (len(members) > 1 and len(terms) == 1 and source.has_word(words[terms[0]]))
        ):
            supported.add(term)
        elif len(members) > 1 and parts[0] in _SCOPE_PREFIXES:
            missing.append("-".join(words[i].text for i in members))
        if prompt is not None and all(stem(words[i].lower) in prompt.stems for i in terms):
            in_prompt.add(term)
    share = len(supported) / len(content) if content else 0.0
    echo = len(in_prompt) / len(content) if content else 0.0
    return SentenceCheck(sentence, frozenset(content), share, echo, tuple(dict.fromkeys(missing)))


@dataclass(frozen=True)
class Dropped:
    sentence: str
    reason: DropReason


@dataclass(frozen=True)
class CheckedSummary:
    text: str  # what holds up, in the summary's format; "" when the TL;DR itself does not
    kept: int  # sentences kept
    dropped: tuple[Dropped, ...] = field(default=())

    @property
    def holds_up(self) -> bool:
        return bool(self.text)

    @property
    def grounded_rate(self) -> float:
        """Share of the summary's sentences that were kept."""
        total = self.kept + len(self.dropped)
        return self.kept / total if total else 0.0


def prompt_fixed_text(parts: Iterable[str]) -> str:
    """A prompt template's own words (rules, worked example) without its placeholders."""
    return "\n".join(_PLACEHOLDER.sub(" ", part) for part in parts)


def _split_label(line: str) -> tuple[str, str]:
    match = _LABEL.match(line)
    if match is None:
        return "", line.strip()
    return match.group(1) + " ", line[match.end() :].strip()


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def sentences(text: str) -> list[str]:
    return [s.strip() for line in text.splitlines() for s in _SENTENCE.split(line) if s.strip()]


def check_summary(summary: str, *, source: str, prompt_text: str = "") -> CheckedSummary:
    """Keep the sentences of a "TL;DR: …" summary (and of its labelled lines) that `source` supports.

    A sentence goes when it has no content word, when it is made of the prompt's own text more than
    of the source (or copies one of the prompt's sentences), when the source does not support it,
    or when it repeats one kept before it. A line left without a sentence goes; when the TL;DR line
    does, nothing holds up (`text` is "").
    """
    paper = Source(source)
    prompt = Source(prompt_text) if prompt_text.strip() else None
    prompt_sentences = [check_sentence(s, paper).content for s in sentences(prompt_text)] if prompt else []
    kept_content: list[frozenset[str]] = []
    kept_lines: list[str] = []
    dropped: list[Dropped] = []
    tldr_holds = False
    for number, line in enumerate(summary.splitlines()):
        if number == 0 and line.startswith(TLDR_PREFIX):
            label, body = TLDR_PREFIX, line[len(TLDR_PREFIX) :].strip()
        else:
            label, body = _split_label(line)
        kept_here: list[str] = []
        for sentence in sentences(body):
            check = check_sentence(sentence, paper, prompt)
            reason: DropReason | None = None
            if not check.content:
                reason = "no_content"
            elif any(_jaccard(check.content, c) >= COPY_JACCARD for c in prompt_sentences) or (
                check.echo >= ECHO_SHARE and check.echo > check.support
            ):
                reason = "prompt_echo"
            elif not check.supported:
                reason = "unsupported"
            elif any(_jaccard(check.content, c) >= REPEAT_JACCARD for c in kept_content):
                reason = "repeated"
            if reason is None:
                kept_here.append(sentence)
                kept_content.append(check.content)
            else:
                dropped.append(Dropped(sentence, reason))
        if kept_here:
            kept_lines.append(label + " ".join(kept_here))
            tldr_holds = tldr_holds or number == 0
    kept = len(kept_content)
    return CheckedSummary("\n".join(kept_lines) if tldr_holds else "", kept, tuple(dropped))
