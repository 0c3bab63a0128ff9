"""pytest plugin for the fake Discord. Register it once, any of these ways:

    pytest_plugins = ["tests.fakediscord.plugin"]      # in the root conftest.py (or a test module)
    addopts = "-p tests.fakediscord.plugin"            # in [tool.pytest.ini_options]
    pytest -p tests.fakediscord.plugin ...             # on the command line

Fixtures:
  ``discord_spec``  Discord's OpenAPI description, loaded once per session.
  ``fake_discord``  a started ``FakeDiscord`` with discord.py pointed at it (``point_discord_at``).
                    At teardown it fails the test if any recorded request broke the spec or Discord's
                    rules (``assert_valid``) or could ping (``assert_no_pings``).

Options per test: ``@pytest.mark.fakediscord(check_pings=False, interaction_deadline=1.0, ...)``
(every keyword except ``check_pings`` goes to ``FakeDiscord``).

Where the spec is: ``--discord-spec PATH``, else the ``discord_spec`` ini setting (relative to the
ini file), else ``$DISCORD_OPENAPI_SPEC`` or the default of ``spec.SPEC_PATH``.

The package depends on pytest, pytest-asyncio, discord.py, aiohttp, openapi-core (with werkzeug and
jsonschema) and optionally zstandard; it imports nothing of the project under test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from .client import point_discord_at
from .server import FakeDiscord
from .spec import SPEC_PATH, DiscordSpec


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fakediscord")
    group.addoption(
        "--discord-spec", metavar="PATH", default=None, help="Discord's OpenAPI description (openapi.json)"
    )
    parser.addini("discord_spec", "Discord's OpenAPI description (openapi.json), relative to the ini file")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fakediscord(check_pings=True, **options): options for the fake_discord fixture"
    )


def spec_path(config: pytest.Config) -> Path:
    option = config.getoption("discord_spec")
    if option:
        return Path(option)
    configured = config.getini("discord_spec")
    if configured:
        base = config.inipath.parent if config.inipath else config.rootpath
        return base / str(configured)
    return SPEC_PATH


@pytest.fixture(scope="session")
def discord_spec(pytestconfig: pytest.Config) -> DiscordSpec:
    path = spec_path(pytestconfig)
    if not path.is_file():
        pytest.fail(
            f"fakediscord: no Discord OpenAPI description at {path}; give its path with --discord-spec, "
            "the discord_spec ini setting or DISCORD_OPENAPI_SPEC",
            pytrace=False,
        )
    return DiscordSpec.shared(path)


@pytest_asyncio.fixture
async def fake_discord(
    discord_spec: DiscordSpec, request: pytest.FixtureRequest
) -> AsyncIterator[FakeDiscord]:
    marker = request.node.get_closest_marker("fakediscord")
    options = dict(marker.kwargs) if marker else {}
    check_pings = options.pop("check_pings", True)
    fake = FakeDiscord(spec=discord_spec, **options)
    await fake.start()
    try:
        with point_discord_at(fake.api_base, fake.gateway_url):
            yield fake
    finally:
        await fake.stop()
    fake.assert_valid()
    if check_pings:
        fake.assert_no_pings()
