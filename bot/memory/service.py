"""Channel memory: opt-in per channel, retention, edits and deletions, forgetting a user, and
answers from the channel's own discussion (`/ask scope:channel`).

Nothing is stored for a channel that has not opted in. What is stored: the messages of conversations
the bot takes part in (the front end decides which; see bot/discord/cogs/memory.py), one point per
message in the memory collection, with guild, channel, author, time and a jump link. Every search
is filtered by guild and channel and by the channel's retention, so nothing crosses channels or
servers and nothing expired is found even before the sweep deletes it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from bot.core.config import MemorySettings
from bot.core.errors import UserInputError
from bot.core.papers import Paper, clean_user_text
from bot.db.memory_store import MemoryChannel, MemoryChannelStore
from bot.rag.iter_retgen import Answer, AnswerProgress, AnswerService
from bot.retrieval.embedding import Embedder
from bot.retrieval.index import ChunkHit, SearchFilter
from bot.retrieval.index.memory import (
    MemoryHit,
    MemoryIndex,
    MemoryPoint,
    MemoryScope,
    StoredMessage,
)
from bot.retrieval.search import SearchService
from bot.retrieval.sparse import sparse_document, sparse_query

log = structlog.get_logger(__name__)

MEMORY_SOURCE = "memory"
MESSAGE_ID_PREFIX = "msg:"


class MemoryNotEnabledError(UserInputError):
    """The channel has not opted in; the message says how to."""


@dataclass(frozen=True)
class ChannelMessage:
    """A message as the front end saw it. `channel_id` is the text channel (a thread's parent)."""

    guild_id: int
    channel_id: int
    thread_id: int | None
    message_id: int
    author_id: int
    author_name: str
    created_at: dt.datetime
    text: str
    jump_url: str


@dataclass(frozen=True)
class MemoryStatus:
    enabled: bool
    retention_days: int
    stored: int
    enabled_at: dt.datetime | None = None
    enabled_by: int | None = None


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def message_paper(message: StoredMessage) -> Paper:
    """A remembered message as the excerpt's "paper": its title names it as a channel message (who,
    when), its link is the message's jump link, so the answer's Sources list links to it."""
    when = dt.datetime.fromtimestamp(message.ts, dt.UTC)
    author = clean_user_text(message.author_name) or "someone"
    return Paper(
        paper_id=f"{MESSAGE_ID_PREFIX}{message.message_id}",
        title=f"Channel message by {author[:40]}, {when:%Y-%m-%d %H:%M} UTC",
        abstract=message.text,
        project_url=message.jump_url,
        sources=[MEMORY_SOURCE],
    )


def is_message_citation(paper_id: str) -> bool:
    return paper_id.startswith(MESSAGE_ID_PREFIX)


def interleave(first: Sequence[ChunkHit], second: Sequence[ChunkHit]) -> list[ChunkHit]:
    """Alternate two rankings, best of `first` first: the channel's messages and the papers each
    keep their own order, neither crowds the other out of the prompt."""
    merged: list[ChunkHit] = []
    for position in range(max(len(first), len(second))):
        merged += [ranking[position] for ranking in (first, second) if position < len(ranking)]
    return merged


class MemoryService:
    def __init__(
        self,
        index: MemoryIndex,
        store: MemoryChannelStore,
        embedder: Embedder,
        search: SearchService,
        answers: AnswerService,
        settings: MemorySettings,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.index = index
        self._store = store
        self._embedder = embedder
        self._search = search
        self._answers = answers
        self.settings = settings
        self._clock = clock
        self._channels: dict[int, MemoryChannel] | None = None  # the opted-in channels, by id

    # ------------------------------------------------------------------ opt-in

    async def _opted_in(self) -> dict[int, MemoryChannel]:
        if self._channels is None:
            self._channels = {c.channel_id: c for c in await self._store.all()}
        return self._channels

    async def channel(self, channel_id: int) -> MemoryChannel | None:
        return (await self._opted_in()).get(channel_id)

    def check_retention(self, retention_days: int | None) -> int:
        days = retention_days or self.settings.retention_days
        if not 1 <= days <= self.settings.max_retention_days:
            raise UserInputError(f"retention_days must be between 1 and {self.settings.max_retention_days}")
        return days

    async def enable(
        self, *, guild_id: int, channel_id: int, user_id: int | None, retention_days: int | None = None
    ) -> MemoryStatus:
        days = self.check_retention(retention_days)
        channel = await self._store.enable(
            guild_id=guild_id, channel_id=channel_id, retention_days=days, enabled_by=user_id
        )
        (await self._opted_in())[channel_id] = channel
        log.info("memory.enabled", guild_id=guild_id, channel_id=channel_id, retention_days=days)
        if retention_days is not None:
            await self._purge_channel(channel, self._clock())  # a shorter retention applies at once
        return await self.status(guild_id=guild_id, channel_id=channel_id)

    async def disable(self, *, guild_id: int, channel_id: int) -> int:
        """Stop remembering the channel and delete everything it had remembered; returns how many."""
        scope = MemoryScope(guild_id=guild_id, channel_id=channel_id)
        stored = await self.index.count(scope)
        await self._store.disable(channel_id)
        (await self._opted_in()).pop(channel_id, None)
        await self.index.delete_scope(scope)
        log.info("memory.disabled", guild_id=guild_id, channel_id=channel_id, deleted=stored)
        return stored

    async def status(self, *, guild_id: int, channel_id: int) -> MemoryStatus:
        channel = await self.channel(channel_id)
        if channel is None or channel.guild_id != guild_id:
            return MemoryStatus(False, self.settings.retention_days, 0)
        stored = await self.index.count(MemoryScope(guild_id=guild_id, channel_id=channel_id))
        return MemoryStatus(True, channel.retention_days, stored, channel.enabled_at, channel.enabled_by)

    # ------------------------------------------------------------------ what is remembered

    async def remember(self, messages: Sequence[ChannelMessage]) -> int:
        """Store the messages of opted-in channels (others are ignored); returns how many were stored."""
        opted_in = await self._opted_in()
        kept: list[StoredMessage] = []
        for message in messages:
            channel = opted_in.get(message.channel_id)
            if channel is None or channel.guild_id != message.guild_id:
                continue
            text = clean_user_text(message.text)[: self.settings.max_message_chars]
            if not text:
                continue
            kept.append(
                StoredMessage(
                    guild_id=message.guild_id,
                    channel_id=message.channel_id,
                    thread_id=message.thread_id,
                    message_id=message.message_id,
                    author_id=message.author_id,
                    author_name=clean_user_text(message.author_name)[:100],
                    ts=int(message.created_at.timestamp()),
                    jump_url=message.jump_url,
                    text=text,
                )
            )
        await self._store_points(kept)
        return len(kept)

    async def _store_points(self, messages: Sequence[StoredMessage]) -> None:
        if not messages:
            return
        vectors = await self._embedder.embed_documents([m.text for m in messages])
        await self.index.upsert(
            [
                MemoryPoint(message=m, dense=v, sparse=sparse_document(m.text))
                for m, v in zip(messages, vectors, strict=True)
            ]
        )

    async def edited(self, message_id: int, text: str | None) -> bool:
        """A remembered message was edited: keep the new text (or drop it when none is left).
        Returns whether the message was remembered. `text` None: the edit did not touch the text."""
        if text is None:
            return False
        stored = (await self.index.get([message_id])).get(message_id)
        if stored is None:
            return False
        cleaned = clean_user_text(text)[: self.settings.max_message_chars]
        if not cleaned:
            await self.index.delete_messages([message_id])
        elif cleaned != stored.text:
            await self._store_points([StoredMessage(**{**stored.__dict__, "text": cleaned})])
        log.info("memory.message_edited", message_id=message_id, kept=bool(cleaned))
        return True

    async def deleted(self, message_ids: Sequence[int]) -> int:
        """Messages deleted on Discord are deleted here too (a no-op for ones never remembered)."""
        if not message_ids:
            return 0
        found = await self.index.get(list(message_ids))
        await self.index.delete_messages(list(message_ids))
        if found:
            log.info("memory.messages_deleted", count=len(found))
        return len(found)

    async def forget_user(self, *, guild_id: int, user_id: int) -> int:
        """Delete everything remembered of one member in this server (every channel); returns how many."""
        scope = MemoryScope(guild_id=guild_id, author_id=user_id)
        stored = await self.index.count(scope)
        await self.index.delete_scope(scope)
        log.info("memory.user_forgotten", guild_id=guild_id, deleted=stored)
        return stored

    async def purge_expired(self, now: dt.datetime | None = None) -> int:
        """Delete what is past each channel's retention; returns how many messages went."""
        now = now or self._clock()
        removed = 0
        for channel in list((await self._opted_in()).values()):
            removed += await self._purge_channel(channel, now)
        if removed:
            log.info("memory.expired_deleted", count=removed)
        return removed

    async def _purge_channel(self, channel: MemoryChannel, now: dt.datetime) -> int:
        cutoff = self._cutoff(channel, now)
        scope = MemoryScope(guild_id=channel.guild_id, channel_id=channel.channel_id, before_ts=cutoff)
        expired = await self.index.count(scope)
        if expired:
            await self.index.delete_scope(scope)
        return expired

    @staticmethod
    def _cutoff(channel: MemoryChannel, now: dt.datetime) -> int:
        return int((now - dt.timedelta(days=channel.retention_days)).timestamp())

    # ------------------------------------------------------------------ search and answers

    async def search(
        self, *, guild_id: int, channel_id: int, query: str, limit: int, now: dt.datetime | None = None
    ) -> list[MemoryHit]:
        channel = await self.channel(channel_id)
        if channel is None or channel.guild_id != guild_id:
            return []
        text = clean_user_text(query)
        if not text:
            return []
        started = time.perf_counter()
        scope = MemoryScope(
            guild_id=guild_id, channel_id=channel_id, since_ts=self._cutoff(channel, now or self._clock())
        )
        dense = await self._embedder.embed_query(text[:2000])
        hits = await self.index.search(dense=dense, sparse=sparse_query(text), limit=limit, scope=scope)
        log.debug("memory.searched", hits=len(hits), ms=round((time.perf_counter() - started) * 1000, 1))
        return hits

    async def answer(
        self,
        question: str,
        *,
        guild_id: int,
        channel_id: int,
        progress: AnswerProgress | None = None,
    ) -> Answer:
        """Iter-RetGen over the channel's remembered messages and the papers; messages are cited with
        their jump links, papers as usual."""
        channel = await self.channel(channel_id)
        if channel is None or channel.guild_id != guild_id:
            raise MemoryNotEnabledError(
                "channel memory is off here, so there is no discussion to search; a server admin can "
                "turn it on with /memory enable (ask without scope to search the papers)"
            )

        async def retrieve(
            query: str, *, limit: int, search_filter: SearchFilter | None, max_query_tokens: int
        ) -> list[ChunkHit]:
            papers = await self._search.search_chunks(
                query, limit=limit, search_filter=search_filter, max_query_tokens=max_query_tokens
            )
            remembered = await self.search(
                guild_id=guild_id, channel_id=channel_id, query=query, limit=self.settings.top_k
            )
            messages = [
                ChunkHit(paper=message_paper(hit.message), chunk_no=0, text=hit.message.text, score=hit.score)
                for hit in remembered
            ]
            return interleave(messages, papers)

        return await self._answers.answer(question, progress=progress, retrieve=retrieve)
