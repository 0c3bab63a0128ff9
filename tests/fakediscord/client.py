"""Pointing the real discord.py at a ``FakeDiscord`` and running a client against it."""

# Test helpers wait on the bot, so their timeouts are part of the API.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, TypeVar

import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

if TYPE_CHECKING:
    from .server import FakeDiscord

ClientT = TypeVar("ClientT", bound=discord.Client)


@contextlib.contextmanager
def point_discord_at(api_base: str, gateway_url: str) -> Iterator[None]:
    """Send discord.py's REST calls to ``api_base`` and its gateway to ``gateway_url``, then restore.

    These are the two class attributes the bot sets from DISCORD_API_BASE / DISCORD_GATEWAY_URL:
    ``Route.BASE`` prefixes every REST route, and ``DiscordWebSocket.DEFAULT_GATEWAY`` is where a
    non-sharded ``Client`` connects for IDENTIFY (it never calls GET /gateway/bot).  RESUME goes to
    the ``resume_gateway_url`` of READY, and an invalidated session falls back to the default.
    """
    old_base, old_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = api_base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway


@contextlib.asynccontextmanager
async def run_client(client: ClientT, fake: FakeDiscord, *, timeout: float = 10.0) -> AsyncIterator[ClientT]:
    """Start ``client`` against ``fake``, wait for its ``ready``, close it on exit.

    ``ready`` comes ``guild_ready_timeout`` (discord.py default 2 s) after the last GUILD_CREATE:
    build test clients with ``guild_ready_timeout=0.05`` to keep tests fast.  An exception that
    ends the client (bad token, disallowed intents...) is raised here instead of being lost.
    """
    task = asyncio.create_task(client.start(fake.token), name="fakediscord-client")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while not client.is_ready():
            if task.done():
                task.result()  # raises what stopped the client
                raise RuntimeError("discord client stopped before it was ready")
            if loop.time() > deadline:
                raise TimeoutError(f"discord client not ready within {timeout:g} s")
            await asyncio.sleep(0.01)
        yield client
    finally:
        await client.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)
