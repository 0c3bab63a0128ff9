"""Prompt templates live in `prompts/*.txt`: a `[system]` and a `[user]` section with `{placeholders}`.

A template may also hold a worked example as earlier turns, `[user]`/`[assistant]` pairs between the
system section and the last `[user]` (sent as messages in chat mode), and a trailing `[assistant]`
section, the start of the reply ("Answer:"), which completions mode ends the prompt with.

The wheel ships them as package data (`bot/_prompts`, see setup.py); `prompts_dir` is the one place
that says where they are read from. Rendering checks that the values given are exactly the
template's placeholders, so a template and the code that fills it cannot drift apart silently.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

from bot.core.errors import ConfigurationError

PACKAGED_PROMPTS = "_prompts"  # the wheel's copy of prompts/, inside `bot` (see setup.py)
SOURCE_PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"


class PromptError(ConfigurationError, ValueError):
    """A prompt file is missing or does not fit the code (an installation problem); names the prompt."""


Role = Literal["user", "assistant"]
Turns = tuple[tuple[Role, str], ...]


@dataclass(frozen=True)
class Prompt:
    system: str
    user: str
    turns: Turns = ()  # the worked example: earlier (role, text) turns, before `user`
    reply_prefix: str = ""  # how the reply starts; completions mode ends the prompt with it


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    system: str
    user: str
    turns: Turns = ()
    reply_prefix: str = ""

    @property
    def parts(self) -> tuple[str, ...]:
        """Every text of the template, in the order it is sent."""
        return (self.system, *(text for _, text in self.turns), self.user, self.reply_prefix)

    @property
    def placeholders(self) -> frozenset[str]:
        names = set()
        for part in self.parts:
            names |= {field for _, field, _, _ in string.Formatter().parse(part) if field}
        return frozenset(names)

    @property
    def version(self) -> str:
        """Changes whenever the template text changes (used as a cache key for summaries)."""
        text = f"{self.system}\0{self.user}"
        if self.turns or self.reply_prefix:
            text += "".join(f"\0{role}\0{turn}" for role, turn in self.turns) + f"\0{self.reply_prefix}"
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def render(self, **values: object) -> Prompt:
        given = set(values)
        if given != self.placeholders:
            missing, extra = self.placeholders - given, given - self.placeholders
            raise PromptError(f"prompt {self.name!r}: missing {sorted(missing)}, unexpected {sorted(extra)}")
        text = {k: str(v) for k, v in values.items()}
        return Prompt(
            system=self.system.format_map(text),
            user=self.user.format_map(text),
            turns=tuple((role, turn.format_map(text)) for role, turn in self.turns),
            reply_prefix=self.reply_prefix.format_map(text),
        )


def parse_template(name: str, text: str) -> PromptTemplate:
    """`[system]`, then `[user]` and `[assistant]` in turn, ending with a `[user]` (the request) and
    optionally an `[assistant]` (the reply's start)."""
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.strip() in ("[system]", "[user]", "[assistant]"):
            sections.append((line.strip()[1:-1], []))
        elif line.startswith("#") and not sections:
            continue  # comments before the first section
        elif sections:
            sections[-1][1].append(line)
    roles = [role for role, _ in sections]
    if roles[:1] != ["system"] or "user" not in roles:
        raise PromptError(f"prompt {name!r} needs a [system] and a [user] section")
    if roles[-1] == "assistant":
        *sections, (_, prefix) = sections
    else:
        prefix = []
    *earlier, (_, user) = sections[1:]
    expected = ["user", "assistant"] * (len(earlier) // 2)
    if [role for role, _ in earlier] != expected or sections[-1][0] != "user":
        raise PromptError(
            f"prompt {name!r}: after [system], [user] and [assistant] sections must alternate, "
            "ending with a [user] (and optionally the reply's start in an [assistant])"
        )
    return PromptTemplate(
        name=name,
        system="\n".join(sections[0][1]).strip(),
        user="\n".join(user).strip("\n"),
        turns=tuple(
            ("user" if role == "user" else "assistant", "\n".join(lines).strip()) for role, lines in earlier
        ),
        reply_prefix="\n".join(prefix).strip(),
    )


def prompts_dir() -> Traversable:
    """The installed package's copy of the templates, else (a source checkout, an editable install)
    the checkout's top-level `prompts/`."""
    packaged = resources.files("bot").joinpath(PACKAGED_PROMPTS)
    return packaged if packaged.is_dir() else SOURCE_PROMPTS_DIR


def prompt_names() -> list[str]:
    return sorted(f.name.removesuffix(".txt") for f in prompts_dir().iterdir() if f.name.endswith(".txt"))


@cache
def load_prompt(name: str) -> PromptTemplate:
    directory = prompts_dir()
    path = directory / f"{name}.txt"
    if not path.is_file():
        raise PromptError(f"no prompt file {name}.txt in {directory}")
    return parse_template(name, path.read_text(encoding="utf-8"))
