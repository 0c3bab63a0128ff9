"""A local fake Discord (REST + gateway on 127.0.0.1) for end-to-end tests with the real discord.py.

    from tests.fakediscord import FakeDiscord, run_client

    async def test_search(fake_discord: FakeDiscord) -> None:
        bot = make_bot(guild_ready_timeout=0.05)
        async with run_client(bot, fake_discord):
            handle = await fake_discord.dispatch_interaction("search", {"query": "rag"})
            message = await handle.original_message()
            assert "RAG" in message["embeds"][0]["title"]

Every REST request is validated against Discord's OpenAPI description
(../shared/discord-api-spec) plus the limits it does not encode; see ``server.FakeDiscord``.
"""

from .checks import MentionAllowance
from .client import point_discord_at, run_client
from .gateway import Close, Gateway, NoBotConnected, Op
from .interactions import InteractionHandle, OptionType
from .records import GatewayFrame, RecordedRequest, UploadedFile, Violation, ViolationKind
from .server import FakeDiscord, Fault
from .spec import DiscordSpec
from .state import ChannelType, FakeDiscordState, Intent, MessageFlag, permission_bits

__all__ = [
    "ChannelType",
    "Close",
    "DiscordSpec",
    "FakeDiscord",
    "FakeDiscordState",
    "Fault",
    "Gateway",
    "GatewayFrame",
    "Intent",
    "InteractionHandle",
    "MentionAllowance",
    "MessageFlag",
    "NoBotConnected",
    "Op",
    "OptionType",
    "RecordedRequest",
    "UploadedFile",
    "Violation",
    "ViolationKind",
    "permission_bits",
    "point_discord_at",
    "run_client",
]
