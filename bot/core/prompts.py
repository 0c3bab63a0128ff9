"""Prompt templates live in `prompts/*.txt`: a `[system]` and a `[user]` section with `{placeholders}`.

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

from bot.core.errors import ConfigurationError

PACKAGED_PROMPTS = "_prompts"  # the wheel's copy of prompts/, inside `bot` (see setup.py)
SOURCE_PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"


class PromptError(ConfigurationError, ValueError):
    """A prompt file is missing or does not fit the code (an installation problem); names the prompt."""


@dataclass(frozen=True)
class Prompt:
    system: str
    user: str


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    system: str
    user: str

    @property
    def placeholders(self) -> frozenset[str]:
        names = set()
        for part in (self.system, self.user):
            names |= {field for _, field, _, _ in string.Formatter().parse(part) if field}
        return frozenset(names)

    @property
    def version(self) -> str:
        """Changes whenever the template text changes (used as a cache key for summaries)."""
        return hashlib.sha1(f"{self.system}\0{self.user}".encode()).hexdigest()[:12]

    def render(self, **values: object) -> Prompt:
        given = set(values)
        if given != self.placeholders:
            missing, extra = self.placeholders - given, given - self.placeholders
            raise PromptError(f"prompt {self.name!r}: missing {sorted(missing)}, unexpected {sorted(extra)}")
        text = {k: str(v) for k, v in values.items()}
        return Prompt(system=self.system.format_map(text), user=self.user.format_map(text))


def parse_template(name: str, text: str) -> PromptTemplate:
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.strip() in ("[system]", "[user]"):
            current = line.strip()[1:-1]
            sections[current] = []
        elif line.startswith("#") and current is None:
            continue  # comments before the first section
        elif current is not None:
            sections[current].append(line)
    if set(sections) != {"system", "user"}:
        raise PromptError(f"prompt {name!r} needs a [system] and a [user] section")
    return PromptTemplate(
        name=name,
        system="\n".join(sections["system"]).strip(),
        user="\n".join(sections["user"]).strip("\n"),
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
