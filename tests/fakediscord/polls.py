"""Native polls as Discord models them: a message's ``poll`` (created from a ``PollCreateRequest``),
votes (MESSAGE_POLL_VOTE_ADD, with the GUILD_MESSAGE_POLLS intent), the answer-voters endpoint, and
the poll's end — by expiry or ``POST /channels/{id}/polls/{message_id}/expire`` — which finalizes
the counts (MESSAGE_UPDATE) and posts a POLL_RESULT system message (type 46) referencing the poll."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

POLL_RESULT_TYPE = 46
DEFAULT_HOURS = 24
ANSWER_TEXT_LIMIT = 55  # Discord's limit on an answer's text (the spec only says 300)
QUESTION_TEXT_LIMIT = 300


def _iso(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).isoformat(timespec="milliseconds")


def poll_from_request(request: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The stored poll (``PollResponse``) for a ``PollCreateRequest``."""
    hours = int(request.get("duration") or DEFAULT_HOURS)
    answers = []
    for number, answer in enumerate(request.get("answers") or [], start=1):
        media = dict(answer.get("poll_media") or {})
        shown: dict[str, Any] = {"text": str(media.get("text") or "")}
        emoji = media.get("emoji")
        if emoji:
            shown["emoji"] = {"id": emoji.get("id"), "name": emoji.get("name")}
        answers.append({"answer_id": number, "poll_media": shown})
    return {
        "question": {"text": str((request.get("question") or {}).get("text") or "")},
        "answers": answers,
        "expiry": _iso(now + hours * 3600),
        "allow_multiselect": bool(request.get("allow_multiselect")),
        "layout_type": int(request.get("layout_type") or 1),
        "results": {"answer_counts": [], "is_finalized": False},
    }


def limit_problems(request: Mapping[str, Any]) -> list[str]:
    """Discord's limits the spec does not state: answer texts of at most 55 characters."""
    problems = []
    question = str((request.get("question") or {}).get("text") or "")
    if len(question) > QUESTION_TEXT_LIMIT:
        problems.append(f"poll question is {len(question)} characters (limit {QUESTION_TEXT_LIMIT})")
    for number, answer in enumerate(request.get("answers") or [], start=1):
        text = str((answer.get("poll_media") or {}).get("text") or "")
        if len(text) > ANSWER_TEXT_LIMIT:
            problems.append(f"poll answer {number} is {len(text)} characters (limit {ANSWER_TEXT_LIMIT})")
    return problems


def counts(poll: Mapping[str, Any], votes: Mapping[int, list[int]], viewer: int) -> list[dict[str, Any]]:
    return [
        {"id": answer_id, "count": len(users), "me_voted": viewer in users}
        for answer_id, users in sorted(votes.items())
        if users
    ]


def finalize(poll: dict[str, Any], votes: Mapping[int, list[int]], viewer: int, now: float) -> None:
    poll["results"] = {"answer_counts": counts(poll, votes, viewer), "is_finalized": True}
    poll["expiry"] = _iso(now)


def result_embed(poll: Mapping[str, Any], votes: Mapping[int, list[int]]) -> dict[str, Any]:
    """The POLL_RESULT message's embed: the question, the winner and the totals, as fields."""
    total = sum(len(users) for users in votes.values())
    fields = [
        {"name": "poll_question_text", "value": poll["question"]["text"], "inline": False},
        {"name": "total_votes", "value": str(total), "inline": False},
    ]
    ranked = sorted(((len(u), -a) for a, u in votes.items() if u), reverse=True)
    if ranked:
        best, answer_id = ranked[0][0], -ranked[0][1]
        text = next(a["poll_media"]["text"] for a in poll["answers"] if a["answer_id"] == answer_id)
        fields += [
            {"name": "victor_answer_votes", "value": str(best), "inline": False},
            {"name": "victor_answer_id", "value": str(answer_id), "inline": False},
            {"name": "victor_answer_text", "value": text, "inline": False},
        ]
    return {"type": "poll_result", "fields": fields}
