"""What kind of question a user asked, read from its first words."""

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


def asks_whether(question: str) -> bool:
    """A yes/no question ("Is there work on …?", "Can a model …?"), not a request ("Can you explain …")."""
    return bool(_WHETHER.match(question)) and not _REQUEST.match(question)
