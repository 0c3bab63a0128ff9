"""Feed gateway and command metrics from discord.py's own events, registered as extra listeners.

`instrument_bot(bot)` is called once by the daemon; it uses only `bot.add_listener` (discord.py's
`commands.Bot`) so this module does not import discord. Successful slash commands are counted from
`on_app_command_completion`; failed ones are counted where errors are reported (see
`bot.core.metrics.observe_command`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from bot.core.metrics import GatewayTracker, observe_command, seconds_since

Listener = Callable[..., Coroutine[Any, Any, None]]


class ListenerHost(Protocol):
    def add_listener(self, func: Listener, /, name: str = ...) -> None: ...


async def _on_app_command_completion(interaction: Any, command: Any) -> None:
    name = getattr(command, "qualified_name", None) or getattr(command, "name", None) or "unknown"
    observe_command(str(name), seconds_since(interaction.created_at), "ok")


def instrument_bot(bot: ListenerHost) -> GatewayTracker:
    """Register the metric listeners on `bot`; returns its gateway tracker."""
    tracker = GatewayTracker()

    async def on_connect() -> None:
        tracker.connected(None)

    async def on_disconnect() -> None:
        tracker.disconnected(None)

    async def on_resumed() -> None:
        tracker.resumed(None)

    async def on_shard_connect(shard_id: int) -> None:
        tracker.connected(shard_id)

    async def on_shard_disconnect(shard_id: int) -> None:
        tracker.disconnected(shard_id)

    async def on_shard_resumed(shard_id: int) -> None:
        tracker.resumed(shard_id)

    # An AutoShardedClient dispatches both `connect` and `shard_connect`: count only the per-shard ones.
    if hasattr(bot, "shards"):
        bot.add_listener(on_shard_connect, "on_shard_connect")
        bot.add_listener(on_shard_disconnect, "on_shard_disconnect")
        bot.add_listener(on_shard_resumed, "on_shard_resumed")
    else:
        bot.add_listener(on_connect, "on_connect")
        bot.add_listener(on_disconnect, "on_disconnect")
        bot.add_listener(on_resumed, "on_resumed")
    bot.add_listener(_on_app_command_completion, "on_app_command_completion")
    return tracker
