"""Which excerpt supports each sentence of an answer: checked in code, not taken from the model.

Small models rarely write [n], and the [n] they write is often the wrong excerpt. Each sentence of a
generated answer is compared with every excerpt the model was shown, on two signals:

- lexical support: the share of the sentence's content words found in the excerpt (its title and
  text) after light normalization (case, a crude suffix stemmer). A missing number or name (a
  capital inside the word or the sentence, an acronym) weighs `SPECIFIC_WEIGHT`: a wrong number or
  name is what a small model invents (a heading or caption in title case marks no names). A number
  of two digits or more that the excerpt does not hold rules the excerpt out.
- dense similarity: the cosine, in the search model's space (MiniLM), between the sentence and the
  excerpt sentence closest to it.

An excerpt supports a sentence when its lexical support is at least `LEXICAL_ALONE`, or at least
`LEXICAL_WITH_DENSE` with a dense similarity of at least `DENSE_MIN` and every number and name of
the sentence in the excerpt (a paraphrase). An excerpt that is itself about the question (it holds
`LEXICAL_WITH_DENSE` of the question's words) also supports a sentence when it supports what the
sentence adds to the question, its restated question words left out; such an excerpt is cited only
when none supports the sentence whole. The sentence keeps the model's own [n] where that
excerpt supports it, unless that excerpt holds only part of the sentence and another holds all of it
(then that one), else shows the best supporting one; a second excerpt that holds the whole sentence
is cited beside it (at most two: the reader then sees each passage that states the fact, often one in
the words they look for); a sentence no excerpt supports is dropped,
and so is one that only says the excerpts do not hold the answer, or only denies the question in its
own words ("No, there is no paper that …"): an excerpt about the question shares its words, so such
a denial would otherwise pass as supported by the very paper it denies. An excerpt that counts the
same thing otherwise ("four foundational politeness levels" for the sentence's "Three foundational
politeness levels") does not support the sentence, whatever words they share. A sentence with no
claim of its own (a label, Discord mentions, the question repeated, "Yes.") stays as written.

The thresholds were chosen on real answers of Qwen2.5-Coder 1.5B and 0.5B to 12 questions over the
seed papers (all 16 grounded answers kept, the 0.5B's 2 wrong [n] corrected, its 4 invented answers
dropped), on 17 paraphrases and 16 on-topic inventions written for the same excerpts, and on each
real answer against the other excerpts shown: 24 of 25 supported sentences kept, 2 of 39
unsupported pairs let through, both contradictions that share the excerpt's words ("… trains a
separate model for every size"), which no overlap measure sees. tests/test_attribution.py holds
the examples.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from bot.core.papers import NOT_A_REFERENCE_PERIOD
from bot.core.words import STOP_WORDS
from bot.rag.citations import CITATION_GROUP
from bot.rag.packing import Source, cut_mid_sentence, format_source
from bot.retrieval.embedding import Embedder, EmbeddingError

log = structlog.get_logger(__name__)

LEXICAL_ALONE = 2 / 3
LEXICAL_WITH_DENSE = 0.4
DENSE_MIN = 0.6
SPECIFIC_WEIGHT = 2.0
# A sentence with at least this many capitalised content words, this share of all of them, is
# written in title case.
TITLE_CASE_MIN_WORDS = 3
TITLE_CASE_SHARE = 0.75

# A sentence ends at . ! or ? (with any [n] written after it) before a space and a word that does
# not start in lower case ("e.g. the" goes on), or at the end of the line.
_SENTENCE_END = re.compile(r"[.!?]+(?:[ \t]*\[\s*\d+\s*(?:[,;]\s*\d+\s*)*\])*(?=[ \t]+[^a-z \t]|[ \t]*$)")
# A list of titles without sentence ends ("[1] HyperAttention: … Time [3] Retrieval Head …"): each
# "[n] Title" is an item of its own, so each can be checked against its own excerpt.
_LIST_ITEM = re.compile(r"(?<=[^\W_)])[ \t]+(?=\[\s*\d+\s*\][ \t]+[A-Z])")
_EXCERPT_SENTENCE = re.compile(rf"(?<=[.!?]){NOT_A_REFERENCE_PERIOD}\s+(?=[^a-z\s])")
# What a removed [n] can leave at the end of a sentence: "… memory [1] and [9]." → "… memory [1] and."
# "[1] and [7]", "[1], [2]": one list of citations, so dropping a number drops its "and" too.
_JOINED_GROUPS = re.compile(r"\][ \t]*(?:,|;|&|and|or)[ \t]*\[")
_DANGLING = re.compile(r"(?:[ \t]*,|[ \t]+(?:and|or))+(?=[.!?]*$)")
_ENUMERATOR = re.compile(r"\(\s*(?:\d|[ivx]{1,4})\s*\)")
_LABEL = re.compile(r"^\s*(?:[-*•]\s*)?[^\W_]+(?:[ \t][^\W_]+)?:[ \t]+(?=\S)")
_MENTION = re.compile(r"<(?:@[!&]?|#)\d+>|@(?:everyone|here)\b")
_HYPHENATED = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)+")
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[^\W\d_]+")
_SUFFIXES = sorted(
    (
        "ational", "ization", "isation", "ations", "ation", "ements", "ement", "ments", "ment",
        "ness", "ities", "ity", "ings", "ing", "ions", "ion", "ably", "ibly", "ally", "ated", "ates",
        "ate", "ers", "er", "ed", "es", "ly", "s",
    ),
    key=len,
    reverse=True,
)  # fmt: skip
_STOP = STOP_WORDS | {"yes"}  # "Yes, …" answers a question; it claims nothing
# Words any answer uses to point at its sources or to frame itself: they neither support a sentence
# nor count against it ("About X: see the first paper [1]").
_FRAMING_WORDS = """answer answers question questions excerpt excerpts paper papers source sources passage
    passages study studies work author authors according see first second third described describe
    describes mention mentions mentioned say says said state states stated show shows shown propose
    proposes proposed present presents presented introduce introduces introduced use uses used using
    make makes made based ask asks asked
"""
_FRAMING = frozenset(_FRAMING_WORDS.split())


# A sentence saying the excerpts do not hold the answer: no claim to cite, and alone a refusal.
_REFUSAL = re.compile(
    r"\b(?:can ?not|can't|unable to)\s+(?:be\s+)?(?:answer|determine|find|tell|say|know)"
    r"|\b(?:do|does|did)\s+not\s+(?:mention|provide|say|state|specify|contain|include|discuss|describe"
    r"|give|address|answer|report|cover)\b"
    r"|\bno\s+(?:information|mention|details?|data)\b"
    r"|\bnot\s+(?:mentioned|provided|specified|stated|given|reported|discussed|described)\b"
    r"|\bno\s+idea\b|\b(?:do\s+not|don't)\s+know\b",
    re.IGNORECASE,
)


# "No", "not", "never", "n't": with nothing but the question's words, a sentence that denies what was
# asked ("No, there is no paper that …", "No, any model does not keep …") says only that the excerpts
# hold no such thing: a refusal, not a claim an excerpt could support.
_NEGATION = re.compile(r"\b(?:no|not|none|never|nothing|neither|nor|cannot)\b|n't\b", re.IGNORECASE)


def is_refusal(answer: str, fixed_reply: str) -> bool:
    """The model declined: it wrote the fixed reply, or only says the excerpts do not hold the answer."""
    if fixed_reply.lower().rstrip(".") in answer.lower():
        return True
    sentences = [sentence for _, sentence in split_sentences(answer)]
    return bool(sentences) and all(_REFUSAL.search(sentence) for sentence in sentences)


def stem(word: str) -> str:
    """A crude suffix stemmer: 'memorizes', 'memorization' → 'memoriz'; 'studies', 'study' → 'studi'."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if len(word) >= 4 and word.endswith("e"):
        word = word[:-1]
    if len(word) >= 4 and word.endswith("y"):
        word = word[:-1] + "i"
    return word


def _normalized(text: str) -> str:
    text = CITATION_GROUP.sub(" ", text)
    return re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,000 → 1000


@dataclass(frozen=True)
class Term:
    stem: str
    specific: bool  # a number or a name
    long_number: bool  # two digits or more: must be in the excerpt


def inner_capital(word: str) -> bool:
    """A capital after the first letter (SHERL, LogQuant, RoBERTa): a name wherever it stands."""
    return any(c.isupper() for c in word[1:])


def terms(text: str, names: frozenset[str] = frozenset()) -> list[Term]:
    """The content words of a sentence, stemmed, numbers and names marked; `names` are the stems of
    the names the excerpts use, so that a name opening the sentence counts as one too."""
    found: list[Term] = []
    for position, match in enumerate(_TOKEN.finditer(_normalized(text))):
        word = match.group()
        lower = word.lower()
        if word[0].isdigit():
            found.append(Term(lower, specific=True, long_number=len(word.replace(".", "")) >= 2))
            continue
        if lower in _STOP or lower in _FRAMING or len(lower) < 2:
            continue
        # A capital after the first letter (SHERL, LogQuant), or a capitalised word inside the sentence.
        named = inner_capital(word) or (word[0].isupper() and position > 0)
        stemmed = stem(lower)
        found.append(Term(stemmed, specific=named or stemmed in names, long_number=False))
    return found


def title_cased(words: Sequence[str]) -> bool:
    """Most content words capitalised: a heading or a caption's title ("Table 2: Theoretical
    First-Packet Latency of …"), where a capital marks no name."""
    content = [w for w in words if len(w) >= 3 and w.lower() not in STOP_WORDS and not w[0].isdigit()]
    capitalised = sum(1 for w in content if w[0].isupper())
    return capitalised >= TITLE_CASE_MIN_WORDS and capitalised >= TITLE_CASE_SHARE * len(content)


_NUMBER_WORDS = {
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "twenty": "20",
}  # fmt: skip
# A number, or a list of them, and the word it counts: "four foundational politeness levels",
# "8 P100 GPUs", "33,511 / 1,000 / 1,000 query-paper pairs".
_NUMBER = r"(?:\d+(?:\.\d+)?|" + "|".join(_NUMBER_WORDS) + r")"
_COUNT = re.compile(
    rf"\b({_NUMBER}(?:[ \t]*(?:/|,|,?[ \t]+(?:and|or|to))[ \t]*{_NUMBER})*)[ \t]+([^\W\d_][\w-]*)",
    re.IGNORECASE,
)


def counts(text: str) -> dict[str, set[str]]:
    """The stem of each word a number counts in `text`, with the numbers it is given (as digits)."""
    found: dict[str, set[str]] = {}
    for numbers, word in _COUNT.findall(_normalized(text)):
        if word.lower() in _STOP:
            continue  # "one of the …", "2 for each"
        given = found.setdefault(stem(word.lower()), set())
        given.update(_NUMBER_WORDS.get(n.lower(), n) for n in re.findall(_NUMBER, numbers, re.IGNORECASE))
    return found


def miscounts(sentence: dict[str, set[str]], excerpt: dict[str, set[str]]) -> bool:
    """The excerpt gives another number for something the sentence counts, and never the sentence's."""
    return any(word in excerpt and numbers.isdisjoint(excerpt[word]) for word, numbers in sentence.items())


def names_in(sources: Sequence[Source]) -> frozenset[str]:
    """Stems of the words the excerpts write as names: a title's short name ("Titans: …") and the
    words capitalised inside their sentences, unless the sentence capitalises most of its words."""
    found: set[str] = set()
    for source in sources:
        short, colon, _ = source.paper.title.partition(":")
        if colon:
            found |= {stem(w.lower()) for w in _TOKEN.findall(short)}
        for sentence in _EXCERPT_SENTENCE.split(format_source(source).partition("\n")[2]):
            words = _TOKEN.findall(sentence)[1:]
            if title_cased(words):
                found |= {stem(w.lower()) for w in words if inner_capital(w)}
                continue
            found |= {stem(w.lower()) for w in words if w[0].isupper()}
    return frozenset(found)


def names_a_shown_work(question: str, sources: Sequence[Source]) -> bool:
    """The question names something the excerpts write as a name (`names_in`; "Which six datasets
    was Recformer evaluated on?"): it asks about a detail of that work, not for a paper. Its words
    are read as the excerpts' are; the first is left out, capitalised as any sentence's first."""
    named = {stem(w.lower()) for w in _TOKEN.findall(question)[1:] if any(c.isupper() for c in w)}
    return not named.isdisjoint(names_in(sources))


def vocabulary(text: str) -> frozenset[str]:
    """Every word stem of an excerpt, hyphenated words also joined ("pre-trained" → "pretrain");
    not the markers of an enumeration ("(1) … (2) …"), which are no numbers of the paper's."""
    text = _ENUMERATOR.sub(" ", _normalized(text))
    joined = (stem(m.group().replace("-", "").lower()) for m in _HYPHENATED.finditer(text))
    return frozenset(stem(w.lower()) for w in _TOKEN.findall(text)) | frozenset(joined)


@dataclass(frozen=True)
class Overlap:
    share: float  # the sentence's terms the excerpt holds, a missing number or name counting double
    names_held: bool  # the excerpt holds every number and name of the sentence
    # Enough held to mean something: two terms, or one number or name ("No idea." shares "idea" with
    # many an excerpt and says nothing of it).
    substantial: bool = True


def lexical_support(sentence: list[Term], excerpt: frozenset[str]) -> Overlap:
    """How much of the sentence the excerpt holds; nothing when it lacks one of its long numbers."""
    if not sentence or any(t.long_number and t.stem not in excerpt for t in sentence):
        return Overlap(0.0, names_held=False, substantial=False)
    specific: dict[str, bool] = {}
    for t in sentence:
        specific[t.stem] = specific.get(t.stem, False) or t.specific
    held = sum(1 for stem_ in specific if stem_ in excerpt)
    missing = sum(
        SPECIFIC_WEIGHT if named else 1.0 for stem_, named in specific.items() if stem_ not in excerpt
    )
    names_held = all(stem_ in excerpt for stem_, named in specific.items() if named)
    substantial = held >= 2 or any(named and stem_ in excerpt for stem_, named in specific.items())
    return Overlap(held / (held + missing), names_held, substantial)


def supports(lexical: Overlap, dense: float | None) -> bool:
    """Enough of the sentence is in the excerpt, or it is a close paraphrase (dense) that keeps the
    excerpt's numbers and names."""
    if not lexical.substantial:
        return False
    if lexical.share >= LEXICAL_ALONE:
        return True
    return (
        dense is not None
        and lexical.names_held
        and lexical.share >= LEXICAL_WITH_DENSE
        and dense >= DENSE_MIN
    )


def excerpt_sentences(source: Source) -> list[str]:
    """The excerpt as the model saw it (title line, text without instructions), in sentences."""
    title, _, body = format_source(source).partition("\n")
    title = CITATION_GROUP.sub("", title, count=1).strip()
    return [title, *(s.strip() for s in _EXCERPT_SENTENCE.split(body) if len(s.strip()) >= 3)]


@dataclass(frozen=True)
class SentenceSupport:
    text: str  # the sentence as written, its [n] markers included
    lexical: dict[int, Overlap]  # source number → lexical support
    dense: dict[int, float]  # source number → best cosine with one of its sentences (empty: no model)
    cited: tuple[int, ...]  # the shown sources the model cited in it
    claim: bool = True  # False: no content word to check ("Yes.", "See the first paper [1].")
    # Sources that support only what the sentence adds to the question, not the sentence whole:
    # the last choice when another excerpt supports it whole.
    by_addition: frozenset[int] = frozenset()
    denies_question: bool = False  # only the question's words, negated: "No, there is no …"

    def supported_by(self, n: int) -> bool:
        return n in self.lexical and supports(self.lexical[n], self.dense.get(n))

    @property
    def holds_whole(self) -> list[int]:
        """The supporting sources that hold every content word of the sentence, strongest first."""
        return [n for n in self.supporters if n not in self.by_addition and self.lexical[n].share >= 1.0]

    def another_holding_whole(self, cited: Sequence[int]) -> list[int]:
        """The strongest source beyond `cited` that holds the whole sentence, if any: its second citation."""
        return [n for n in self.holds_whole if n not in cited][:1]

    @property
    def supporters(self) -> list[int]:
        """Every supporting source, the strongest first."""
        found = [n for n in self.lexical if self.supported_by(n)]
        return sorted(
            found, key=lambda n: (n in self.by_addition, -(self.lexical[n].share + self.dense.get(n, 0.0)), n)
        )


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


async def embed_sentences(embedder: Embedder | None, texts: Sequence[str]) -> list[list[float]] | None:
    """Vectors of `texts`, or None when there is no embedder or it fails (lexical support only)."""
    if embedder is None or not texts:
        return None
    try:
        return await embedder.embed_documents(list(texts))
    except EmbeddingError as exc:
        log.warning("rag.attribution_without_dense", error=str(exc))
        return None


def split_sentences(text: str) -> list[tuple[str, str]]:
    """(separator before it, sentence) for each sentence; joined back they are `text`."""
    pieces: list[tuple[str, str]] = []
    position = 0
    for line in re.finditer(r"[^\n]+", text):
        start = line.start()
        ends = [m.end() for m in _SENTENCE_END.finditer(line.group())]
        ends = sorted({*ends, *(m.start() for m in _LIST_ITEM.finditer(line.group()))})
        if not ends or ends[-1] < len(line.group().rstrip()):
            ends.append(len(line.group()))
        for end in ends:
            chunk = line.group()[start - line.start() : end]
            stripped = chunk.lstrip()
            if stripped.strip():
                begin = start + len(chunk) - len(stripped)
                pieces.append((text[position:begin], stripped.rstrip()))
                position = begin + len(stripped.rstrip())
            start = line.start() + end
    if pieces and position < len(text):
        pieces[-1] = (pieces[-1][0], pieces[-1][1] + text[position:].rstrip())
    return pieces


def _negations(text: str) -> int:
    return len(_NEGATION.findall(text))


def claim_text(sentence: str, question: str) -> str:
    """`sentence` without what makes no claim about the papers: a leading label ("Paragraph 2:",
    "Note:"), Discord mentions, and the user's question repeated word for word ("About “What is
    SHERL?”: see [1]")."""
    text = _MENTION.sub(" ", _LABEL.sub("", sentence, count=1))
    asked = _MENTION.sub(" ", question).split()
    if len(asked) >= 2:
        text = re.sub(r"\s+".join(map(re.escape, asked)), " ", text, flags=re.IGNORECASE)
    return text


async def score_sentences(
    answer: str, sources: Sequence[Source], embedder: Embedder | None, *, question: str = ""
) -> list[tuple[str, SentenceSupport]]:
    """Each sentence of `answer` with its support by each shown source."""
    shown = {s.number: s for s in sources}
    vocab = {s.number: vocabulary(format_source(s)) for s in sources}  # its title line and text
    excerpt_counts = {s.number: counts(format_source(s)) for s in sources}
    pieces = split_sentences(answer)
    names = names_in(sources)
    claims = [claim_text(sentence, question) for _, sentence in pieces]
    sentence_terms = [terms(text, names) for text in claims]
    question_terms = terms(question, names)
    asked = {t.stem for t in question_terms}
    about_question = {  # the excerpts that are themselves about the question
        n for n in shown
        if question_terms and lexical_support(question_terms, vocab[n]).share >= LEXICAL_WITH_DENSE
    }  # fmt: skip
    excerpt_texts = {s.number: excerpt_sentences(s) for s in sources}
    flat = [text for texts in excerpt_texts.values() for text in texts]
    vectors = await embed_sentences(embedder, [*(_normalized(s) for _, s in pieces), *flat])
    scored = []
    for i, (separator, sentence) in enumerate(pieces):
        dense: dict[int, float] = {}
        if vectors is not None:
            offset = len(pieces)
            for number, texts in excerpt_texts.items():
                own = vectors[offset : offset + len(texts)]
                offset += len(texts)
                dense[number] = max((cosine(vectors[i], v) for v in own), default=0.0)
        cited = tuple(
            n
            for group in CITATION_GROUP.findall(sentence)
            for n in (int(x) for x in re.split(r"[,;]", group))
            if n in shown
        )
        # The words it shares with the question restate what was asked: a sentence the excerpt does not
        # support whole is also supported when what it adds is ("To fine-tune … when GPU memory is
        # tight, use memory-efficient series (METL)") — but only by an excerpt that is itself about
        # the question: "… by using SHERL [3]" adds one name, which a SHERL excerpt holds whatever was
        # asked. A sentence that adds nothing is checked whole (a restated question is no claim).
        added = [t for t in sentence_terms[i] if t.stem not in asked]
        lexical = {}
        by_addition: set[int] = set()
        sentence_counts = counts(claims[i])
        for n in shown:
            if miscounts(sentence_counts, excerpt_counts[n]):
                lexical[n] = Overlap(0.0, names_held=False, substantial=False)
                continue
            lexical[n] = lexical_support(sentence_terms[i], vocab[n])
            if added and n in about_question and not supports(lexical[n], dense.get(n)):
                addition = lexical_support(added, vocab[n])  # what the sentence adds, on its own
                if supports(addition, dense.get(n)):
                    lexical[n] = addition
                    by_addition.add(n)
        claim = bool(sentence_terms[i])
        denies = claim and not added and _negations(claims[i]) > _negations(question)
        support = SentenceSupport(sentence, lexical, dense, cited, claim, frozenset(by_addition), denies)
        scored.append((separator, support))
    return scored


@dataclass(frozen=True)
class Attribution:
    text: str  # the kept sentences, each claim with its [n]; "" when nothing is supported
    supported: int  # claims an excerpt supports
    dropped: list[str]  # the claims no excerpt supports, and refusal sentences


def _with_citations(sentence: str, numbers: Sequence[int]) -> str:
    """`sentence` with its markers replaced by `numbers`, placed before the final punctuation."""
    bare = CITATION_GROUP.sub("", _JOINED_GROUPS.sub(", ", sentence))
    bare = re.sub(r"[ \t]+([.,;:!?])", r"\1", bare)
    bare = _DANGLING.sub("", bare.rstrip())
    markers = "".join(f"[{n}]" for n in numbers)
    end = re.search(r"[.!?]+$", bare)
    if end:
        return f"{bare[: end.start()].rstrip()} {markers}{end.group()}"
    return f"{bare.rstrip()} {markers}"


# A sentence counts as copied up to an excerpt's cut when it ends in the excerpt's last words, this
# many: two alone ("the model") also end unrelated sentences.
CUT_TAIL_WORDS = 4


def _last_words(text: str, count: int) -> list[str]:
    return [w.strip(".,;:").lower() for w in text.split()[-count:]]


def mark_cut_ends(text: str, sources: Sequence[Source]) -> str:
    """A sentence copied up to where a cited excerpt was cut ("… the current context while
    utilizing [1].": the excerpt ended mid-sentence to fit the prompt) ends with "…", so it does
    not read as the paper's whole sentence."""
    cut = {
        s.number: _last_words(s.text, CUT_TAIL_WORDS)
        for s in sources
        if s.text.strip() and cut_mid_sentence(s.text)
    }
    out = []
    for separator, sentence in split_sentences(text):
        cited = [int(n) for group in CITATION_GROUP.findall(sentence) for n in re.split(r"[,;]", group)]
        body = CITATION_GROUP.sub("", sentence).rstrip(" .")
        if len(body.split()) > CUT_TAIL_WORDS and any(
            _last_words(body, CUT_TAIL_WORDS) == cut.get(n) for n in cited
        ):
            sentence = _with_citations(f"{body}…", list(dict.fromkeys(cited)))
        out.append(separator + sentence)
    return "".join(out)


def _kept_as_written(sentence: str, keep: set[int]) -> str:
    """`sentence` with only the [n] in `keep` left where the model wrote them."""

    def keep_valid(match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.split(r"[,;]", match.group(1))]
        return "".join(f"[{n}]" for n in numbers if n in keep)

    text = CITATION_GROUP.sub(keep_valid, _JOINED_GROUPS.sub(", ", sentence))
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text)
    text = _DANGLING.sub("", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


async def attribute(
    answer: str, sources: Sequence[Source], embedder: Embedder | None, *, question: str = ""
) -> Attribution:
    """`answer` with every claim cited by the excerpt that supports it, unsupported claims dropped.

    A sentence without a claim of its own ("Yes.", "About “<the question>”: see [1].") stays as
    written, with the [n] it gave if valid; text is "" unless some claim or cited pointer is left."""
    kept: list[tuple[str, str]] = []  # (separators since the previous kept sentence, sentence)
    dropped: list[str] = []
    supported = pointers = 0
    pending = ""  # the separators of dropped sentences too, so a paragraph break survives
    for separator, support in await score_sentences(answer, sources, embedder, question=question):
        pending += separator
        if _REFUSAL.search(support.text) or support.denies_question:
            dropped.append(support.text)  # "the excerpts do not say …" is no claim to cite
            continue
        verified = [n for n in dict.fromkeys(support.cited) if support.supported_by(n)]
        if not support.claim:
            sentence = _kept_as_written(support.text, set(support.cited))
            pointers += bool(support.cited)
        elif verified and (whole := support.holds_whole) and not set(verified) & set(whole):
            # The model's [n] holds part of the sentence, another excerpt all of it: show that one.
            sentence = _with_citations(support.text, [whole[0]])
            supported += 1
        elif verified:
            sentence = _kept_as_written(support.text, set(verified))
            if second := support.another_holding_whole(verified):
                sentence = _with_citations(sentence, [*verified, *second])
            supported += 1
        elif support.supporters:
            best = support.supporters[:1]
            sentence = _with_citations(support.text, [*best, *support.another_holding_whole(best)])
            supported += 1
        else:
            dropped.append(support.text)
            continue
        kept.append((pending, sentence))
        pending = ""
    if dropped:
        log.info("rag.unsupported_sentences_dropped", dropped=len(dropped), supported=supported)
    if not supported and not pointers:
        return Attribution(text="", supported=0, dropped=dropped)
    text = ""
    for separators, sentence in kept:
        if text:
            newlines = separators.count("\n")
            text += "\n" * min(newlines, 2) if newlines else " "
        text += sentence
    return Attribution(text=text, supported=supported, dropped=dropped)
