"""Questions as people ask them, reduced to what describes the papers they want.

"Which paper feeds the model's own draft answer back into retrieval?" asks for papers about feeding
a draft back into retrieval; "which paper" says nothing about them, yet BM25 scores "paper" like any
other word (stop-word lists keep it), and it is in nearly every abstract that says "this paper".
Only the asking frame is dropped: a leading "which paper…", "is there work on…", "how can one…",
"I'm looking for…", and the words that name a paper rather than describe one.
"""

from __future__ import annotations

import re

_ASKING = re.compile(
    r"""^\s*(?:
        (?:is|are)\s+there\s+(?:any\s+|a\s+|an\s+|some\s+)?(?:papers?|work|research|studies|articles?)?
            (?:\s+(?:on|about|that|which|where))?
      | (?:which|what)\s+(?:papers?|articles?|work|publications?)(?:\s+(?:is|are|was|were))?
      | (?:i\s+(?:want|need|am\s+looking\s+for|'m\s+looking\s+for)|i'm\s+looking\s+for|looking\s+for
         |give\s+me|show\s+me|find\s+me|tell\s+me\s+about|where\s+can\s+i\s+find|do\s+you\s+know)
            (?:\s+(?:a|an|some|the|any))?
      | how\s+(?:can|could|do|does|should|would)\s+(?:i|one|we|you)
      | (?:can|could)\s+(?:i|one|we|you)
    )\b""",
    re.IGNORECASE | re.VERBOSE,
)
# Words that name a paper, not its content; dropped anywhere in the question.
_PAPER_WORDS = re.compile(r"\b(?:papers?|articles?|publications?)\b", re.IGNORECASE)


def clean_question(text: str) -> str:
    """The question without its asking frame; the original when nothing else would be left."""
    cleaned = _PAPER_WORDS.sub(" ", _ASKING.sub(" ", text, count=1))
    cleaned = " ".join(cleaned.split()).strip(" ,;:")
    return cleaned if re.search(r"\w{3}", cleaned) else text
