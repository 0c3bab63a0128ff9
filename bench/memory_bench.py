"""Channel memory at scale (issue 17): search p95 with 100,000 stored messages, and the time to forget
one member's data, through the production `MemoryService` over its own Qdrant Edge collection.

.venv/bin/python bench/memory_bench.py [--messages 100000] [--distinct 3000] [--queries 200]

Texts are real: sentences of the 9,577 Hugging Face abstracts in ../shared/data, one per message, so
BM25 sees 100k different texts. Dense vectors cost ~20 texts/s on 2 cores, so `--distinct` sentences
are embedded with MiniLM and every message's vector is one of them plus small Gaussian noise
(σ = 0.02 per dimension, renormalized): the index holds 100k distinct vectors with the neighbourhood
structure of real text, not 100k independent embeddings — said so in bench/README.md. Queries are
embedded for real (ONNX, as in production) and timed with the search.

Layout: 5 servers × 10 channels; one busy channel holds 30% of all messages (the scoped search's
worst case), the rest are spread evenly; 2,000 authors, one of whom wrote 2,000 messages across
every channel of his server (the member who asks to be forgotten).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import random
import re
import shutil
import time

import numpy as np
import structlog
from common import ROOT, SHARED, percentile

OUT = ROOT / "bench" / "out" / "memory"
GUILDS, CHANNELS_PER_GUILD, AUTHORS = 5, 10, 2000
BUSY_SHARE = 0.3
HEAVY_MESSAGES = 2000


def sentences(limit: int) -> list[str]:
    found: list[str] = []
    for part in sorted((SHARED / "hf_daily_papers").glob("hf_daily_papers_slim_part*.jsonl")):
        for line in part.read_text().splitlines():
            abstract = json.loads(line).get("paper", {}).get("summary") or json.loads(line).get(
                "abstract", ""
            )
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join(str(abstract).split())):
                if 30 <= len(sentence) <= 400:
                    found.append(sentence)
                    if len(found) >= limit:
                        return found
    return found


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=3000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()

    from bot.core.config import CoreSettings, MemorySettings, Settings
    from bot.db import Database, upgrade_schema
    from bot.db.memory_store import MemoryChannelStore
    from bot.memory.service import MemoryService
    from bot.retrieval.embedding import LocalEmbedder
    from bot.retrieval.index.memory import EdgeMemoryIndex, MemoryPoint, MemoryScope, StoredMessage
    from bot.retrieval.sparse import sparse_document

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    rng = random.Random(17)
    texts = sentences(args.messages)
    if len(texts) < args.messages:
        texts = [texts[i % len(texts)] for i in range(args.messages)]
    print(f"{len(texts)} message texts ({len(set(texts))} distinct sentences of real abstracts)")

    embedder = LocalEmbedder()
    started = time.perf_counter()
    base = np.asarray(await embedder.embed_documents(texts[: args.distinct]), dtype=np.float32)
    embed_s = time.perf_counter() - started
    print(
        f"embedded {args.distinct} distinct texts in {embed_s:.0f} s ({args.distinct / embed_s:.1f} texts/s)"
    )

    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    settings = Settings(core=CoreSettings(data_dir=OUT))
    database = Database.from_settings(settings)
    await upgrade_schema(database.engine)
    store = MemoryChannelStore(database)
    channels = [(g, 1000 + g * 100 + c) for g in range(1, GUILDS + 1) for c in range(CHANNELS_PER_GUILD)]
    for guild, channel in channels:
        await store.enable(guild_id=guild, channel_id=channel, retention_days=90, enabled_by=None)
    index = EdgeMemoryIndex(OUT / "qdrant-memory")
    await index.ensure_collection(base.shape[1])
    memory = MemoryService(index, store, embedder, None, None, MemorySettings())  # type: ignore[arg-type]

    busy = channels[0]
    heavy_author = 7
    now = dt.datetime.now(dt.UTC)
    noise = np.random.default_rng(17)
    started = time.perf_counter()
    batch: list[MemoryPoint] = []
    heavy_left = HEAVY_MESSAGES
    others: list[int] = []  # ids of messages by other members
    busy_count = 0
    for number, text in enumerate(texts):
        if rng.random() < BUSY_SHARE:
            guild, channel = busy
            busy_count += 1
        else:
            guild, channel = rng.choice(channels)
        author = rng.randrange(100, 100 + AUTHORS)
        if heavy_left and rng.random() < HEAVY_MESSAGES / args.messages * 1.2:
            guild, channel = rng.choice([c for c in channels if c[0] == busy[0]])
            author, heavy_left = heavy_author, heavy_left - 1
        if author != heavy_author:
            others.append(10_000_000 + number)
        vector = base[number % args.distinct] + noise.normal(0, 0.02, base.shape[1]).astype(np.float32)
        vector /= np.linalg.norm(vector)
        message = StoredMessage(
            guild_id=guild, channel_id=channel, thread_id=None, message_id=10_000_000 + number,
            author_id=author, author_name=f"user{author}", ts=int(now.timestamp()) - 60 * number,
            jump_url=f"https://discord.com/channels/{guild}/{channel}/{10_000_000 + number}", text=text,
        )  # fmt: skip
        batch.append(MemoryPoint(message, vector.tolist(), sparse_document(text)))
        if len(batch) == 1000:
            await index.upsert(batch)
            batch = []
    await index.upsert(batch)
    await index.flush()
    load_s = time.perf_counter() - started
    total = sum([await index.count(MemoryScope(guild_id=g)) for g in range(1, GUILDS + 1)])
    busy_stored = await index.count(MemoryScope(guild_id=busy[0], channel_id=busy[1]))
    print(
        f"stored {total} messages in {load_s:.0f} s ({total / load_s:.0f}/s, vectors given); "
        f"busy channel {busy_stored}"
    )

    queries = [t.split(",")[0][:120] for t in rng.sample(texts, args.queries)]
    small = channels[-1]
    for query in queries[:10]:  # warm-up
        await memory.search(guild_id=busy[0], channel_id=busy[1], query=query, limit=4)
    rows = []
    for label, (guild, channel) in (("busy channel", busy), ("typical channel", small)):
        stored = await index.count(MemoryScope(guild_id=guild, channel_id=channel))
        times, hits = [], 0
        for query in queries:
            started = time.perf_counter()
            found = await memory.search(guild_id=guild, channel_id=channel, query=query, limit=4)
            times.append((time.perf_counter() - started) * 1000)
            hits += bool(found)
            assert all(h.message.channel_id == channel for h in found)  # never another channel's
        rows.append((label, stored, percentile(times, 0.5), percentile(times, 0.95), hits / len(queries)))

    print(f"\nmemory search, {total} stored messages, query embedding included ({len(queries)} queries)")
    print("| scope | messages in scope | p50 ms | p95 ms | queries with hits |")
    print("|---|---|---|---|---|")
    for label, stored, p50, p95, share in rows:
        print(f"| {label} | {stored} | {p50:.1f} | {p95:.1f} | {share:.2f} |")

    heavy_stored = await index.count(MemoryScope(guild_id=busy[0], author_id=heavy_author))
    started = time.perf_counter()
    forgotten = await memory.forget_user(guild_id=busy[0], user_id=heavy_author)
    forget_s = time.perf_counter() - started
    left = await index.count(MemoryScope(guild_id=busy[0], author_id=heavy_author))
    one = others[len(others) // 2]
    started = time.perf_counter()
    await memory.deleted([one])
    delete_ms = (time.perf_counter() - started) * 1000
    after = await index.count(MemoryScope(guild_id=busy[0])) + sum(
        [await index.count(MemoryScope(guild_id=g)) for g in range(2, GUILDS + 1)]
    )
    print(
        f"\nforget one member: {forgotten} of {heavy_stored} messages deleted in {forget_s * 1000:.0f} ms; "
        f"left: {left}"
    )
    print(f"delete one message (MESSAGE_DELETE): {delete_ms:.1f} ms; stored now {after}")
    p95_busy = rows[0][3]
    print(f"\nsearch p95 under 500 ms at {total} messages: {'PASS' if p95_busy < 500 else 'FAIL'}")
    print(f"forget within one minute: {'PASS' if forget_s < 60 and left == 0 else 'FAIL'}")
    await index.close()
    await database.close()


if __name__ == "__main__":
    asyncio.run(main())
