"""A pytest plugin: the real paperbot against the fake Discord and the scripted LLM, as a `World`.

`make_world(**DISCORD_overrides)` builds settings and the production services over a small real
index (built once per module); `world.bot()` runs the bot. `refusal` and `final_message` read what
the user saw.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app.services import Services
from bot.core.config import Settings
from tests.fakediscord import FakeDiscord, InteractionHandle, MessageFlag
from tests.support.paperbot_discord import (
    build_seed_index,
    default_responder,
    make_settings,
    open_services,
    running_bot,
)
from tests.support.scripted_llm import RecordedRequest, ScriptedLLMServer


@pytest.fixture(scope="module")
def discord_seed_index(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    path = tmp_path_factory.mktemp("discord") / "qdrant"
    build_seed_index(path, embedder)
    return path


@dataclass
class World:
    fake: FakeDiscord
    llm: ScriptedLLMServer
    settings: Settings
    services: Services

    def channel(self, name: str = "general") -> int:
        return self.fake.state.channel_id(name)

    def user(self, name: str) -> int:
        return self.fake.state.user_id(name)

    @property
    def bot_id(self) -> int:
        return self.fake.state.bot_user_id

    def bot(self) -> Any:
        return running_bot(self.services, self.settings, self.fake)


MakeWorld = Callable[..., Awaitable[World]]


@pytest.fixture
async def make_world(
    fake_discord: FakeDiscord,
    scripted_llm: ScriptedLLMServer,
    discord_seed_index: Path,
    embedder: Any,
    tmp_path: Path,
) -> AsyncIterator[MakeWorld]:
    """Settings (DISCORD_* overrides as keywords, LLM ones as `llm_overrides`) and the production
    services over the seed index."""
    scripted_llm.responder = default_responder
    async with AsyncExitStack() as stack:

        async def make(
            *,
            llm_overrides: dict[str, Any] | None = None,
            fulltext_overrides: dict[str, Any] | None = None,
            **discord_overrides: Any,
        ) -> World:
            data_dir = tmp_path / "data"
            settings = make_settings(
                fake_discord, scripted_llm, data_dir, llm_overrides=llm_overrides,
                fulltext_overrides=fulltext_overrides, **discord_overrides,
            )  # fmt: skip
            services = await stack.enter_async_context(
                open_services(discord_seed_index, embedder, scripted_llm, settings)
            )
            return World(fake_discord, scripted_llm, settings, services)

        yield make


@pytest.fixture
async def world(make_world: MakeWorld) -> World:
    return await make_world()


async def refusal(handle: InteractionHandle) -> str:
    """The text of an immediate ephemeral refusal (no defer, nothing public)."""
    callback = await handle.response()
    assert callback["type"] == 4, callback
    assert callback["data"]["flags"] & MessageFlag.EPHEMERAL
    return str(callback["data"]["content"])


async def final_message(handle: InteractionHandle, *, within: float = 10.0) -> dict[str, Any]:
    """The original response once it is a finished answer (has embeds or no progress marker)."""

    def done(h: InteractionHandle) -> dict[str, Any] | None:
        message = h.original
        if message is None or message["flags"] & MessageFlag.LOADING:
            return None
        content = message["content"]
        return None if content.startswith(("🔎", "✍️", "⏳")) else message

    return await handle.wait_for(done, timeout=within, what="final answer")


def llm_requests_since(llm: ScriptedLLMServer, start: int) -> list[RecordedRequest]:
    return [r for r in llm.requests[start:] if r.path.endswith("/completions")]
