"""One error family (bot.core.errors): every error class under bot/ is one of two kinds, and Discord and
the CLI each map the kinds in one place, so a new error class is reported well without being listed."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import discord
import pytest
from discord import app_commands
from structlog.testing import capture_logs

import bot
from bot.app import cli
from bot.core.errors import ConfigurationError, DependencyUnavailableError, PaperbotError, UserInputError
from bot.discord.errors import describe_failure, failure_outcome, user_message
from bot.retrieval.tokens import TokenizerUnavailableError

# Exceptions under bot/ that are deliberately outside the family, each with the reason.
OUTSIDE_THE_FAMILY = {
    "bot.discord.errors.RateLimited": "a discord.py CheckFailure (the command tree's protocol); "
    "user_message maps it with the cooldown it carries",
    "bot.discord.rest_client.DiscordAPIError": "the doctor's Discord REST client reports the HTTP status and "
    "Discord code, which the doctor interprets check by check; it never reaches users",
    "bot.llm.client.MalformedResponseError": "internal to the LLM client: a retry signal that becomes "
    "LLMUnavailableError once retries are exhausted",
}
KINDS = (UserInputError, DependencyUnavailableError)
UNAVAILABLE = re.compile(
    r"(?P<what>[A-Z][^;]*) is unavailable right now; please try again in a minute "
    r"\(reference `[0-9a-f]{8}`\)\."
)


def _error_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in a module under bot/ (imported ones are counted where defined)."""
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(bot.__path__, "bot."):
        if module_info.name == "bot.__main__":  # runs the CLI on import
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found[f"{module.__name__}.{name}"] = value
    return found


ERROR_CLASSES = _error_classes()
FAMILY = {name: cls for name, cls in ERROR_CLASSES.items() if issubclass(cls, KINDS)}


def _instance(cls: type[BaseException], message: str) -> BaseException:
    """An instance with `message` as its text, whatever the class's constructor asks for."""
    return cls.__new__(cls, message)  # sets args; the extra attributes __init__ sets are not needed here


def test_discovery_sees_the_error_modules() -> None:
    # If the walk found nothing (or skipped a package) every other test here would pass vacuously.
    for name in (
        "bot.retrieval.tokens.TokenizerUnavailableError",
        "bot.retrieval.index.base.IndexUnavailableError",
        "bot.db.engine.DatabaseUnavailableError",
        "bot.limits.budget.BudgetExhausted",
        "bot.discord.errors.UserFacingError",
        "bot.llm.errors.LocalLLMUnavailable",
    ):
        assert name in ERROR_CLASSES, name
    assert set(OUTSIDE_THE_FAMILY) <= set(ERROR_CLASSES), "an allow-list entry no longer exists; remove it"


def test_every_error_class_is_one_of_the_two_kinds() -> None:
    outside = {
        name
        for name, cls in ERROR_CLASSES.items()
        if not issubclass(cls, KINDS) and cls is not PaperbotError and name not in OUTSIDE_THE_FAMILY
    }
    assert outside == set(), "derive these from UserInputError or DependencyUnavailableError"
    both = [
        name
        for name, cls in FAMILY.items()
        if issubclass(cls, UserInputError) and issubclass(cls, DependencyUnavailableError)
    ]
    assert both == []
    for name in OUTSIDE_THE_FAMILY:
        assert not issubclass(ERROR_CLASSES[name], PaperbotError), (
            f"{name} joined the family; drop it from the list"
        )


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("bot.discord.errors.UserFacingError", UserInputError),
        ("bot.retrieval.search.QueryError", UserInputError),
        ("bot.rag.iter_retgen.QuestionError", UserInputError),
        ("bot.digest.subscriptions.SubscriptionLimitError", UserInputError),
        ("bot.limits.budget.BudgetExhausted", UserInputError),
        ("bot.ingest.sources.base.RecordError", UserInputError),
        ("bot.retrieval.tokens.TokenizerUnavailableError", DependencyUnavailableError),
        ("bot.retrieval.index.base.IndexUnavailableError", DependencyUnavailableError),
        ("bot.retrieval.embedding.EmbeddingError", DependencyUnavailableError),
        ("bot.db.engine.DatabaseUnavailableError", DependencyUnavailableError),
        ("bot.db.schema.SchemaError", DependencyUnavailableError),
        ("bot.ingest.fetch.FetchError", DependencyUnavailableError),
        ("bot.llm.errors.LLMError", DependencyUnavailableError),
        ("bot.db.engine.DatabaseConfigError", ConfigurationError),
        ("bot.core.prompts.PromptError", ConfigurationError),
    ],
)
def test_each_error_has_its_kind(name: str, kind: type[PaperbotError]) -> None:
    assert issubclass(ERROR_CLASSES[name], kind)


def test_value_errors_stay_value_errors() -> None:
    # Existing `except ValueError` callers (the doctor's DATABASE_URL check, parsers) still catch these.
    for name in (
        "bot.retrieval.search.QueryError",
        "bot.rag.iter_retgen.QuestionError",
        "bot.digest.subscriptions.SubscriptionLimitError",
        "bot.ingest.sources.base.RecordError",
        "bot.db.engine.DatabaseConfigError",
        "bot.core.prompts.PromptError",
    ):
        assert issubclass(ERROR_CLASSES[name], ValueError), name


def test_the_daemon_configuration_error_is_the_family_one() -> None:
    from bot.app.daemon import ConfigurationError as DaemonConfigurationError

    assert DaemonConfigurationError is ConfigurationError


# -- Discord: one mapping by kind --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(n for n, c in FAMILY.items() if issubclass(c, UserInputError)))
def test_discord_shows_any_user_input_error_as_an_expected_refusal(name: str) -> None:
    error = _instance(ERROR_CLASSES[name], "that date is in the future")
    assert user_message(error) == ("That date is in the future", True)
    assert failure_outcome(error) == "user_error"


@pytest.mark.parametrize(
    "name", sorted(n for n, c in FAMILY.items() if issubclass(c, DependencyUnavailableError))
)
def test_discord_names_what_is_down_for_any_dependency_error(name: str) -> None:
    cls = ERROR_CLASSES[name]
    error = _instance(cls, "connect to 10.0.0.7:6333 refused; check QDRANT_URL")
    text, expected = user_message(error)
    assert (text, expected) == (f"{cls.what} is unavailable right now; please try again in a minute", False)  # type: ignore[attr-defined]
    assert failure_outcome(error) == "error"
    assert "10.0.0.7" not in text  # the operator's details stay in the log


def test_discord_reports_a_tokenizer_failure_with_a_reference_and_logs_it() -> None:
    try:
        raise TokenizerUnavailableError("tiktoken could not load cl100k_base: hash mismatch in /srv/cache")
    except TokenizerUnavailableError as exc:
        wrapped = app_commands.CommandInvokeError(_command(), exc)
    with capture_logs() as logs:
        text = describe_failure(wrapped)
    match = UNAVAILABLE.fullmatch(text)
    assert match is not None, text
    assert match["what"] == "The tokenizer"
    assert "Traceback" not in text and "tiktoken" not in text and "/srv/cache" not in text
    [event] = [e for e in logs if e["event"] == "discord.request_failed"]
    assert event["log_level"] == "error" and event["error_type"] == "TokenizerUnavailableError"
    assert f"`{event['reference']}`" in text  # the user can quote what we logged
    assert isinstance(event["exc_info"], TokenizerUnavailableError)


def test_discord_existing_outage_texts_are_kept() -> None:
    from bot.db.engine import DatabaseUnavailableError
    from bot.retrieval.embedding import EmbeddingError
    from bot.retrieval.index import IndexUnavailableError

    for error, service in (
        (IndexUnavailableError("closed"), "The paper index"),
        (EmbeddingError("refused"), "The search model"),
        (DatabaseUnavailableError("locked"), "The bot's database"),
    ):
        assert user_message(error)[0] == f"{service} is unavailable right now; please try again in a minute"


def _command() -> app_commands.Command:
    async def noop(interaction: discord.Interaction) -> None:
        return None

    return app_commands.Command(name="x", description="x", callback=noop)


# -- CLI: one mapping by kind ------------------------------------------------------------------------


def test_cli_tokenizer_unavailable_is_one_line_and_exit_3(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.app import services

    def unavailable(encoding: str, directory: Path | None = None) -> Path:
        raise TokenizerUnavailableError(f"tiktoken could not load {encoding}: hash mismatch")

    monkeypatch.setattr(services, "ensure_tiktoken_cache", unavailable)
    code = cli.main(["search", "transfer learning"])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_UNAVAILABLE == 3
    assert out == "" and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: tiktoken could not load cl100k_base: hash mismatch"
    ]
    assert "cli.unavailable" in err  # and the structured log line


def test_cli_user_input_error_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"q": "video generation"}\n{"q": \n')
    code = cli.main(["search", "--queries-file", str(queries)])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_USAGE == 2
    assert out == "" and "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {queries}:2: not JSON")
