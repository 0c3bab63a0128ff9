"""What kind of question a user asked, read from its words."""

from __future__ import annotations

import re

_LEAD_IN = r"^\s*(?:(?:so|ok|okay|hey|hi|also|and|but|well)\b[,:!]?\s+)*"
_WHETHER = re.compile(
    _LEAD_IN + r"(?:is|are|was|were|do|does|did|can|could|has|have|had|will|would|should|any)\b",
    re.IGNORECASE,
)
# "Can you explain …", "Do you know which …": a request, not a yes/no question.
_REQUEST = re.compile(
    _LEAD_IN + r"(?:can|could|would|will|do)\s+(?:you|u)\s+(?:please\s+)?"
    r"(?:explain|tell|summari[sz]e|describe|give|list|show|help|compare|clarify|elaborate|say|walk"
    r"|outline|point|know|recommend|suggest|find)\b",
    re.IGNORECASE,
)
# What a paper is, in the words people ask for one with: singular → plural.
_WORK_NOUNS = {
    "paper": "papers", "work": "works", "study": "studies", "survey": "surveys", "review": "reviews",
    "overview": "overviews", "thesis": "theses", "article": "articles", "method": "methods",
    "model": "models", "system": "systems", "framework": "frameworks", "approach": "approaches",
    "architecture": "architectures", "technique": "techniques", "algorithm": "algorithms",
    "benchmark": "benchmarks", "dataset": "datasets", "retriever": "retrievers",
    "recommender": "recommenders", "agent": "agents", "encoder": "encoders", "resource": "resources",
    "baseline": "baselines", "leaderboard": "leaderboards",
}  # fmt: skip
_WORK = "(?:" + "|".join(word for pair in _WORK_NOUNS.items() for word in pair) + ")"
_WORKS = "(?:" + "|".join(_WORK_NOUNS.values()) + ")"  # asking for several
# "What do models …", "Which dataset does …": a question about the work named next, not for one.
_AUXILIARY = r"(?:do|does|did)"
# "Which dataset does Titans / the model / it …": "does" asks about what follows. "Which papers do
# retrieval by …" has "do" as its verb, and "Which methods do you recommend …?" asks the bot.
_ABOUT_WHAT_FOLLOWS = (
    rf"\s+{_AUXILIARY}\s+(?:(?:the|a|an|this|that|these|those|its|their|his|her|our|my|it|they|he|she|we"
    r"|i)\b|(?-i:[A-Z]))"
)
# "Which paper …", "What neural architecture …", "Where can I find …", "I'm looking for a survey …",
# "I need a review of …", "Which model lets you …": the answer is a paper, not a fact from one
# ("What dataset does Titans train on?" asks for a fact).
_SEEK_FORMS = (
    rf"(?:which|what)\s+(?:(?!{_AUXILIARY}\b)[\w-]+\s+){{0,3}}?{_WORK}\b(?!{_ABOUT_WHAT_FOLLOWS})",
    r"where\s+(?:can|could|do|should|would)\s+(?:i|we|one|you)\s+(?:find|get|look)\b",
    r"(?:i\s*(?:['’]m|am)\s+|we\s*(?:['’]re|are)\s+)?looking\s+for\b",
    rf"(?:i|we)\s+(?:want|need|would\s+like|['’]d\s+like)\b.{{0,40}}?\b{_WORK}\b",
    rf"(?:please\s+)?(?:give|show|send|recommend|suggest)\s+(?:me\s+|us\s+)?(?:(?:a|an|some|the|any)\s+)?"
    rf"(?:[\w-]+\s+){{0,2}}?{_WORK}\b",
    r"(?:can|could)\s+(?:you|u)\s+(?:please\s+)?(?:recommend|suggest|point\s+me\s+to|find)\b",
    rf"(?:do|does)\s+(?:you|u|anyone)\s+know\s+(?:of\s+)?(?:(?:a|an|any|some|which|what)\s+)?"
    rf"(?:[\w-]+\s+){{0,2}}?{_WORK}\b",
)
_SEEKS = re.compile(_LEAD_IN + "(?:" + "|".join(_SEEK_FORMS) + ")", re.IGNORECASE)


def asks_whether(question: str) -> bool:
    """A yes/no question ("Is there work on …?", "Can a model …?"), not a request ("Can you explain …")."""
    return bool(_WHETHER.match(question)) and not _REQUEST.match(question)


def seeks_paper(question: str) -> bool:
    """A question whose answer is a paper: a yes/no question ("Is there work on …?") or one asking for
    a work by what it does ("Which method …?", "Where can I find …?", "I'm looking for a survey on …")."""
    return asks_whether(question) or bool(_SEEKS.match(question))


# "Which papers …", "Are there surveys on …", "Any works on …", "I'm looking for papers …": the
# plural names what is asked for, not the topic ("Does rewriting … help language models …?").
_SEVERAL = re.compile(
    _LEAD_IN + r"(?:which|what|are\s+there|were\s+there|any|do\s+(?:you|u|anyone)\s+know(?:\s+of)?"
    r"|(?:i\s*(?:['’]m|am)\s+|we\s*(?:['’]re|are)\s+)?looking\s+for|(?:please\s+)?(?:give|show|send)\s+(?:me|us)"
    r"|(?:can|could)\s+(?:you|u)\s+(?:please\s+)?(?:recommend|suggest|find|list)|recommend|suggest|list)"
    rf"\s+(?:[\w-]+\s+){{0,3}}?{_WORKS}\b",
    re.IGNORECASE,
)


def asks_for_papers(question: str) -> bool:
    """A question asking for several papers ("Which papers …?", "Are there surveys on …?"), as opposed
    to one ("Is there a paper that compares methods …?") or a question whose topic is plural ("Does
    rewriting a long context help language models …?")."""
    return seeks_paper(question) and bool(_SEVERAL.match(question))
