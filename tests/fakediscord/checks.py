"""Rules Discord enforces that its OpenAPI description does not encode, checked by hand.

See ../shared/discord-api-spec/README.md: the spec allows 4000 characters of content (Discord
rejects more than 2000 on bot messages) and says nothing of the 6000 characters across all
embeds of a message.  The other embed limits are in the spec too; they are repeated here so the
rules read in one place and the fake's 400 responses carry Discord's own error wording.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_EMBED_TITLE = 256
MAX_EMBED_DESCRIPTION = 4096
MAX_EMBED_FIELDS = 25
MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 1024
MAX_FOOTER_TEXT = 2048
MAX_AUTHOR_NAME = 256
MAX_AUTOCOMPLETE_CHOICES = 25
MAX_CHOICE_NAME = 100
MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # attachment_size_limit of an unboosted guild

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_EVERYONE = re.compile(r"@(everyone|here)\b")


@dataclass(frozen=True)
class Problem:
    """A rejected field: JSON path below the body, Discord's error code and message."""

    path: tuple[str | int, ...]
    code: str
    message: str

    def where(self, root: str = "body") -> str:
        text = root
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else f".{part}"
        return text

    def __str__(self) -> str:
        return f"{self.where()}: {self.message}"


def _too_long(path: tuple[str | int, ...], value: Any, limit: int) -> list[Problem]:
    if isinstance(value, str) and len(value) > limit:
        return [Problem(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length. ({len(value)})")]
    return []


def message_problems(payload: Mapping[str, Any] | None, base: tuple[str | int, ...] = ()) -> list[Problem]:
    """Content and embed limits of a message create/edit payload."""
    if not isinstance(payload, Mapping):
        return []
    problems = _too_long((*base, "content"), payload.get("content"), MAX_CONTENT)
    embeds = payload.get("embeds") or []
    if not isinstance(embeds, list):
        return problems
    if len(embeds) > MAX_EMBEDS:
        problems.append(
            Problem((*base, "embeds"), "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_EMBEDS} or fewer in length.")
        )
    total = 0
    for index, embed in enumerate(embeds):
        if not isinstance(embed, Mapping):
            continue
        at = (*base, "embeds", index)
        problems += _too_long((*at, "title"), embed.get("title"), MAX_EMBED_TITLE)
        problems += _too_long((*at, "description"), embed.get("description"), MAX_EMBED_DESCRIPTION)
        total += _text_len(embed.get("title")) + _text_len(embed.get("description"))
        fields = embed.get("fields") or []
        if len(fields) > MAX_EMBED_FIELDS:
            problems.append(
                Problem(
                    (*at, "fields"), "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_EMBED_FIELDS} or fewer in length."
                )
            )
        for f_index, embed_field in enumerate(fields):
            if not isinstance(embed_field, Mapping):
                continue
            f_at = (*at, "fields", f_index)
            for key, limit in (("name", MAX_FIELD_NAME), ("value", MAX_FIELD_VALUE)):
                value = embed_field.get(key)
                if value == "":
                    problems.append(Problem((*f_at, key), "BASE_TYPE_REQUIRED", "This field is required"))
                problems += _too_long((*f_at, key), value, limit)
                total += _text_len(value)
        footer = embed.get("footer") or {}
        author = embed.get("author") or {}
        problems += _too_long((*at, "footer", "text"), footer.get("text"), MAX_FOOTER_TEXT)
        problems += _too_long((*at, "author", "name"), author.get("name"), MAX_AUTHOR_NAME)
        total += _text_len(footer.get("text")) + _text_len(author.get("name"))
    if total > MAX_EMBED_TOTAL:
        problems.append(
            Problem(
                (*base, "embeds"),
                "MAX_EMBED_SIZE_EXCEEDED",
                f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL} ({total} characters in all embeds)",
            )
        )
    return problems


def _text_len(value: Any) -> int:
    return len(value) if isinstance(value, str) else 0


def autocomplete_problems(data: Mapping[str, Any] | None) -> list[Problem]:
    choices = (data or {}).get("choices") or []
    problems = []
    if len(choices) > MAX_AUTOCOMPLETE_CHOICES:
        problems.append(
            Problem(
                ("data", "choices"),
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {MAX_AUTOCOMPLETE_CHOICES} or fewer in length. ({len(choices)})",
            )
        )
    for index, choice in enumerate(choices):
        name = (choice or {}).get("name") if isinstance(choice, Mapping) else None
        if isinstance(name, str) and not 1 <= len(name) <= MAX_CHOICE_NAME:
            problems.append(
                Problem(
                    ("data", "choices", index, "name"),
                    "BASE_TYPE_BAD_LENGTH",
                    f"Must be between 1 and {MAX_CHOICE_NAME} in length.",
                )
            )
    return problems


def is_empty_message(message: Mapping[str, Any]) -> bool:
    """Discord refuses (50006) a message with nothing to show."""
    return not (
        message.get("content")
        or message.get("embeds")
        or message.get("attachments")
        or message.get("components")
        or message.get("sticker_items")
        or message.get("poll")
    )


# -- mentions -----------------------------------------------------------------------------------


@dataclass
class MentionAllowance:
    """Pings a test has declared legitimate (see ``FakeDiscord.allow_pings``)."""

    users: set[int] = field(default_factory=set)
    roles: set[int] = field(default_factory=set)
    everyone: bool = False
    replied_user: bool = False


def ping_problems(payload: Mapping[str, Any], allowance: MentionAllowance, *, is_reply: bool) -> list[str]:
    """Why a message payload could ping someone it should not; empty when it cannot.

    The rule is about the request, not the text: without ``allowed_mentions`` Discord parses
    every ``@everyone``, role and user mention in the content, so a bot that forgets it is one
    paper title away from pinging a whole server.
    """
    allowed = payload.get("allowed_mentions")
    if not isinstance(allowed, Mapping):
        found = describe_mentions(payload.get("content"))
        hint = f" (content mentions {found})" if found else ""
        return [
            "no allowed_mentions: Discord would parse @everyone, roles and users from the content"
            f"{hint}; send allowed_mentions=discord.AllowedMentions.none()"
        ]
    problems = []
    parse = [p for p in allowed.get("parse") or [] if p]
    for kind in parse:
        if kind == "everyone" and allowance.everyone:
            continue
        problems.append(f"allowed_mentions.parse contains {kind!r}")
    users = {int(u) for u in allowed.get("users") or [] if u is not None}
    roles = {int(r) for r in allowed.get("roles") or [] if r is not None}
    if users - allowance.users:
        problems.append(f"allowed_mentions.users lists {sorted(users - allowance.users)}")
    if roles - allowance.roles:
        problems.append(f"allowed_mentions.roles lists {sorted(roles - allowance.roles)}")
    if is_reply and allowed.get("replied_user") and not allowance.replied_user:
        problems.append("allowed_mentions.replied_user is true on a reply: the author would be pinged")
    return problems


def mentioned_ids(content: Any) -> tuple[list[int], list[int], bool]:
    """(user ids, role ids, @everyone/@here) written in a message's content."""
    if not isinstance(content, str):
        return [], [], False
    users = list(dict.fromkeys(int(m) for m in _USER_MENTION.findall(content)))
    roles = list(dict.fromkeys(int(m) for m in _ROLE_MENTION.findall(content)))
    return users, roles, bool(_EVERYONE.search(content))


def describe_mentions(content: Any) -> str:
    users, roles, everyone = mentioned_ids(content)
    parts: list[str] = []
    if everyone:
        parts.append("@everyone/@here")
    parts += [f"<@{u}>" for u in users] + [f"<@&{r}>" for r in roles]
    return ", ".join(parts)


def effective_mentions(content: Any, allowed: Mapping[str, Any] | None) -> tuple[list[int], list[int], bool]:
    """Who Discord would actually notify, given the content and allowed_mentions."""
    users, roles, everyone = mentioned_ids(content)
    if not isinstance(allowed, Mapping):
        return users, roles, everyone
    parse = set(allowed.get("parse") or [])
    allowed_users = {int(u) for u in allowed.get("users") or [] if u is not None}
    allowed_roles = {int(r) for r in allowed.get("roles") or [] if r is not None}
    return (
        [u for u in users if "users" in parse or u in allowed_users],
        [r for r in roles if "roles" in parse or r in allowed_roles],
        everyone and "everyone" in parse,
    )
