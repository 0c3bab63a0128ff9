"""pytest plugin: register with ``pytest_plugins = ["tests.fakediscord.plugin"]`` in conftest.py.

Fixtures:
  ``discord_spec``  the OpenAPI description, loaded once per session;
  ``fake_discord``  a started ``FakeDiscord`` with discord.py pointed at it.  At teardown it fails
                    the test if any recorded request broke the spec or Discord's rules, or could ping.

Options per test: ``@pytest.mark.fakediscord(check_pings=False, interaction_deadline=1.0, ...)``
(every keyword except ``check_pings`` goes to ``FakeDiscord``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from .client import point_discord_at
from .server import FakeDiscord
from .spec import DiscordSpec


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fakediscord(check_pings=True, **options): options for the fake_discord fixture"
    )


@pytest.fixture(scope="session")
def discord_spec() -> DiscordSpec:
    return DiscordSpec.shared()


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
