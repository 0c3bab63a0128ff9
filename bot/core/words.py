"""Words that carry no claim about a paper, shared by the checks that compare a text with its source
(answer attribution in bot.rag, summary grounding in bot.digest); each adds its own few."""

from __future__ import annotations

_WORDS = """a about above after again against all also although among an and any are as at be because been
    before being between both but by can could did do does doing done during each either else et etc
    even ever every for from further had has have having here how however i if in into is it its
    itself just less many may might more most much must my no nor not of off on once one only onto
    or other others our out over own per rather same several should since so some such than that the
    their them themselves then there therefore these they this those though through thus to too
    under until up upon us very via was we well were what when where whether which while who whom
    whose why will with within would yet you your
"""
STOP_WORDS = frozenset(_WORDS.split())
