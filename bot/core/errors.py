"""paperbot's one error family: every error we raise is one of two kinds, and each front end maps the
kinds once (Discord in `bot.discord.errors.user_message`, the CLI in `bot.app.cli.main`).

- `UserInputError`: the user's input, or a limit the bot enforces. Not our fault; the message is
  written for the user and shown as it is.
- `DependencyUnavailableError`: a store, service or model the bot needs cannot be used. The message
  says what and, when known, how to fix it; users are told which part is down, operators get the
  full message. `ConfigurationError` is the case where a setting is what makes it unusable.

Anything else that escapes is a bug of ours: a generic message and a traceback in the logs.
"""

from __future__ import annotations

from typing import ClassVar


class PaperbotError(Exception):
    """Base of every error paperbot raises on purpose; raise one of its kinds, not this."""


class UserInputError(PaperbotError):
    """The user's input cannot be used, or it exceeds a known limit; the message is for the user.

    Discord shows the message as a sentence (an expected refusal, logged at info); the CLI prints
    `error: <message>` and exits 2.
    """


class DependencyUnavailableError(PaperbotError):
    """A store, service or model cannot be used; the message says what and, when known, how to fix it.

    Discord says "<what> is unavailable right now; please try again in a minute" with a reference
    (the full error is logged with it); the CLI prints `error: <message>` and exits 3.
    """

    what: ClassVar[str] = "A service the bot needs"  # what users are told is down


class ConfigurationError(DependencyUnavailableError):
    """A setting, or a file the installation needs, names something paperbot cannot use; the message
    names it and how to fix it. Reported like any dependency that cannot be used (`paperbot run`
    exits with EX_CONFIG instead, so a supervisor does not restart a misconfigured bot)."""
