"""`python -m bot config`: every setting's effective value and where it came from, secrets redacted.

The sources are pydantic-settings' own (`EnvSettingsSource`, `DotEnvSettingsSource` over the same
`.env` the settings read), so prefixes, aliases, case-insensitive names and "empty means default"
(`env_ignore_empty`) are judged exactly as when the settings were loaded. Precedence is theirs too:
the environment, then `.env`, then the default.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TextIO, get_args

from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, DotEnvSettingsSource, EnvSettingsSource, SettingsError

from bot.core.config import Settings, load_settings
from bot.core.logs import SecretScrubber

Source = Literal["environment", ".env", "default"]
SOURCE_PHRASES: dict[Source, str] = {
    "environment": "from the environment",
    ".env": "from .env",
    "default": "the default",
}
REDACTED = "********"


@dataclass(frozen=True)
class SettingReport:
    concern: str  # the part of `Settings`: core, qdrant, llm...
    variable: str  # what an operator sets, e.g. QDRANT_URL
    value: Any  # JSON-ready; a secret is REDACTED when set, None when not
    source: Source
    secret: bool


def env_name(model: type[BaseSettings], field: str) -> str:
    """The environment variable that sets `field`: its alias, else the class's prefix + its name."""
    info = model.model_fields.get(field)
    if info is not None and info.alias:
        return info.alias.upper()
    return f"{model.model_config.get('env_prefix', '')}{field}".upper()


def _is_secret(info: FieldInfo) -> bool:
    return SecretStr in (get_args(info.annotation) or (info.annotation,))


def _sources(model: type[BaseSettings]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the environment and the `.env` file give this class (keys: field names, or aliases)."""
    return EnvSettingsSource(model)(), DotEnvSettingsSource(model)()


def source_of(model: type[BaseSettings], field: str, found: tuple[dict[str, Any], dict[str, Any]]) -> Source:
    info = model.model_fields[field]
    keys = {field, info.alias} - {None}
    environment, dotenv = found
    if keys & environment.keys():
        return "environment"
    if keys & dotenv.keys():
        return ".env"
    return "default"


def collect(settings: Settings) -> list[SettingReport]:
    # A configured secret that also shows in a plain setting (a URL with the password) is hidden there too.
    scrubber = SecretScrubber(settings.secrets)
    reports = []
    for concern in Settings.model_fields:
        part: BaseSettings = getattr(settings, concern)
        model = type(part)
        found = _sources(model)
        dumped = part.model_dump(mode="json")
        for field, info in model.model_fields.items():
            secret = _is_secret(info)
            if secret:
                current = getattr(part, field)
                value = REDACTED if current is not None and current.get_secret_value() else None
            else:
                value = dumped[field]
                value = scrubber.scrub_text(value) if isinstance(value, str) else value
            source = source_of(model, field, found)
            reports.append(SettingReport(concern, env_name(model, field), value, source, secret))
    return reports


def _shown(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "(none)"
    return str(value)


def render_table(reports: list[SettingReport], out: TextIO) -> None:
    counts = {
        source: sum(r.source == source for r in reports) for source in ("environment", ".env", "default")
    }
    dotenv = Path(".env")
    where = f"{dotenv.resolve()}" if dotenv.is_file() else "none in the working directory"
    out.write(
        f"paperbot config: {len(reports)} settings — {counts['environment']} from the environment, "
        f"{counts['.env']} from .env ({where}), {counts['default']} defaults\n"
    )
    width = max(len(r.variable) for r in reports)
    value_width = min(max(len(_shown(r.value)) for r in reports), 60)
    concern = None
    for report in reports:
        if report.concern != concern:
            concern = report.concern
            out.write(f"\n[{concern}]\n")
        out.write(f"  {report.variable:<{width}}  {_shown(report.value):<{value_width}}  {report.source}\n")


def describe_validation_error(exc: ValidationError, *, with_source: bool = False) -> str:
    """`RAG_ITERATIONS: Input should be less than or equal to 7`: the variable an operator sets
    (and, `with_source`, where its value came from)."""
    import bot.core.config as config

    named = getattr(config, exc.title, None)
    model = named if isinstance(named, type) and issubclass(named, BaseSettings) else None
    found = _sources(model) if with_source and model is not None else None
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        if model is None or field not in model.model_fields:
            problems.append(f"{exc.title}: {error['msg']}")
            continue
        name = env_name(model, field)
        if found is not None:
            name = f"{name} ({SOURCE_PHRASES[source_of(model, field, found)]})"
        problems.append(f"{name}: {error['msg']}")
    return "; ".join(problems)


def run_config(as_json: bool, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`python -m bot config [--json]`: 0, or 1 and one line on stderr when a setting is invalid."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        settings = load_settings()
    except ValidationError as exc:
        err.write(f"error: invalid settings: {describe_validation_error(exc, with_source=True)}\n")
        return 1
    except SettingsError as exc:
        err.write(f"error: invalid settings: {exc}\n")
        return 1
    reports = collect(settings)
    if as_json:
        out.write(json.dumps([asdict(r) for r in reports], ensure_ascii=False) + "\n")
    else:
        render_table(reports, out)
    out.flush()
    return 0
