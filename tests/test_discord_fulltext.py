"""A paper's body in Discord (issue 14): a question in a thread is answered from a full-text passage,
and the Sources list says which section (and page) it came from; /paper lists the sections, and on
demand fetches the full text from (a local stand-in for) arXiv after the card is out.

The real discord.py against the fake Discord (every request checked against Discord's OpenAPI
description), the real services over a real Qdrant Edge index, the scripted LLM server.
"""

from __future__ import annotations

import re
from typing import Any

from bot.core.papers import Paper
from tests.support.discord_world import MakeWorld, World
from tests.support.fake_arxiv import FULLTEXT, FakeArxiv
from tests.support.scripted_llm import prompt_text

pytest_plugins = ["tests.support.fake_arxiv"]

MISTRAL_PDF = FULLTEXT / "mistral-7b" / "pdf" / "2310.06825.pdf"


def quote_first_passage(body: dict[str, Any]) -> str:
    """A model that answers with the first sentence of excerpt [1], cited (so it holds up)."""
    prompt = prompt_text(body)
    if prompt.rstrip().endswith("Standalone question:"):
        return prompt.rsplit("Follow-up:", 1)[1].split("\n", 1)[0].strip()
    block = prompt.rsplit("<<<EXCERPTS", 1)[1].split("EXCERPTS>>>", 1)[0]
    excerpt = re.search(r"^\[1\] [^\n]*\n(.+)$", block, flags=re.MULTILINE)
    assert excerpt is not None
    sentence = re.split(r"(?<=[.!?])\s+", excerpt.group(1).strip())[0]
    return f"Reasoning: excerpt [1] answers it.\nAnswer: {sentence} [1]"


def sources_lines(message: dict[str, Any]) -> list[str]:
    embed = next(e for e in message["embeds"] if e.get("title") == "Sources")
    return str(embed["description"]).splitlines()


async def test_a_thread_question_is_answered_from_the_papers_body_with_its_section_in_sources(
    world: World,
) -> None:
    fake, llm = world.fake, world.llm
    assert world.services.fulltext is not None
    result = await world.services.fulltext.ingest_path(MISTRAL_PDF)
    assert result.new_paper and result.paper.paper_id == "2310.06825"
    llm.responder = quote_first_passage
    general = world.channel()
    async with world.bot():
        asked = await fake.dispatch_message(general, f"<@{world.bot_id}> What is Mistral 7B?")
        thread = int(asked["id"])
        await fake.wait_for_message(thread)
        before = len(llm.requests)
        follow = await fake.dispatch_message(
            thread, "How does Mistral 7B limit its cache size with the rolling buffer cache?"
        )
        answer = await fake.wait_for_message(thread, after=int(follow["id"]))
        prompts = [prompt_text(r.json) for r in llm.requests[before:] if r.path.endswith("/completions")]

    # The model was shown the body passage with its section, and it is what the answer cites.
    block = prompts[-1].rsplit("<<<EXCERPTS", 1)[1].split("EXCERPTS>>>", 1)[0]
    first = re.search(r"^\[1\] (.+)\n(.+)$", block, flags=re.MULTILINE)
    assert first is not None
    assert re.fullmatch(r"Mistral 7B — §2 Architectural details \(p\. [23]\)", first.group(1))
    assert "rolling buffer cache" in first.group(2).lower()
    sentence = answer["content"].removesuffix(" [1]")
    assert answer["content"].endswith("[1]") and sentence in first.group(2)
    assert sentence not in result.paper.abstract  # from the body, not the abstract
    first, *_ = sources_lines(answer)
    assert first.startswith("**[1]** [Mistral 7B](https://arxiv.org/abs/2310.06825)")
    assert re.search(r"§2 Architectural details \(p\. [23]\)$", first)


async def test_paper_lists_sections_and_fetches_the_full_text_on_demand(
    make_world: MakeWorld, fake_arxiv: FakeArxiv
) -> None:
    fake_arxiv.serve_real_papers()
    world = await make_world(
        fulltext_overrides={
            "mode": "on_demand", "ARXIV_BASE_URL": fake_arxiv.base_url, "request_interval_s": 0.05,
        }
    )  # fmt: skip
    assert world.services.fulltext is not None and world.services.fulltext.mode == "on_demand"
    paper = Paper(paper_id="2310.06825", arxiv_id="2310.06825", title="Mistral 7B", abstract="A 7B model.")
    await world.services.ingestor.ingest([paper])
    async with world.bot():
        handle = await world.fake.dispatch_interaction("paper", {"id_or_url": "2310.06825"})

        def fetched(h: Any) -> dict[str, Any] | None:
            message = h.original
            fields = message["embeds"][0]["fields"] if message and message["embeds"] else []
            value = next((f["value"] for f in fields if f["name"] == "Full text"), "")
            return message if value.startswith("Indexed") else None

        await handle.wait_for(fetched, timeout=60, what="the card with its sections")
    # What the card said, in order: first while fetching, then once the full text was in.
    shown = [
        f["value"]
        for r in world.fake.requests
        if isinstance(r.json, dict)
        for e in r.json.get("embeds") or []
        for f in e.get("fields", [])
        if f["name"] == "Full text"
    ]
    assert shown[0] == "Fetching the full text from arXiv…"
    # No HTML for it, so the e-print (LaTeX source) was next: the sections it holds.
    assert shown[-1].startswith("Indexed (latex, 9 sections): §1 Introduction · §2 Architectural details")
    assert len(shown) == 2
    assert fake_arxiv.paths() == ["/html/2310.06825", "/e-print/2310.06825"]


async def test_eager_mode_fetches_the_full_text_of_each_paper_a_digest_posts(
    make_world: MakeWorld, fake_arxiv: FakeArxiv
) -> None:
    import asyncio
    import datetime as dt

    from bot.digest.delivery import PaperPost

    fake_arxiv.serve_real_papers()
    overrides = {"mode": "eager", "ARXIV_BASE_URL": fake_arxiv.base_url, "request_interval_s": 0.05}
    world = await make_world(fulltext_overrides=overrides)
    paper = Paper(paper_id="2501.11120", arxiv_id="2501.11120", title="Tell me about yourself", abstract="x")
    await world.services.ingestor.ingest([paper])
    post = PaperPost(
        subscription_id=None, digest_date=dt.date(2026, 8, 18), rank=1, paper=paper, summary="A summary.",
        summary_note=None, why="", layout="thread_per_paper", marker="pb-digest",
    )  # fmt: skip
    async with world.bot() as bot:
        await bot.digest_poster.post_paper(world.channel(), post, None)
        fetching = list(bot.digest_poster.fetching)
        assert fetching, "the full text is fetched in the background, after the post"
        await asyncio.wait_for(asyncio.gather(*fetching), timeout=120)
    record = world.services.fulltext.status("2501.11120")
    assert record is not None and record.source_format == "html"
    assert fake_arxiv.paths() == ["/html/2501.11120"]


async def test_on_demand_mode_leaves_digest_posts_alone(make_world: MakeWorld, fake_arxiv: FakeArxiv) -> None:
    import datetime as dt

    from bot.digest.delivery import PaperPost

    overrides = {"mode": "on_demand", "ARXIV_BASE_URL": fake_arxiv.base_url}
    world = await make_world(fulltext_overrides=overrides)
    paper = Paper(paper_id="2501.11120", arxiv_id="2501.11120", title="Tell me about yourself", abstract="x")
    post = PaperPost(
        subscription_id=None, digest_date=dt.date(2026, 8, 18), rank=1, paper=paper, summary="A summary.",
        summary_note=None, why="", layout="thread_per_paper", marker="pb-digest",
    )  # fmt: skip
    async with world.bot() as bot:
        await bot.digest_poster.post_paper(world.channel(), post, None)
        assert not bot.digest_poster.fetching
    assert fake_arxiv.requests == []


async def test_a_question_in_a_digest_posts_thread_is_answered_from_that_papers_fetched_body(
    make_world: MakeWorld, fake_arxiv: FakeArxiv
) -> None:
    import datetime as dt

    from bot.digest.delivery import PaperPost

    fake_arxiv.serve_real_papers()
    overrides = {"mode": "on_demand", "ARXIV_BASE_URL": fake_arxiv.base_url, "request_interval_s": 0.05}
    world = await make_world(fulltext_overrides=overrides)
    world.llm.responder = quote_first_passage
    paper = Paper(paper_id="2310.06825", arxiv_id="2310.06825", title="Mistral 7B", abstract="A 7B model.")
    await world.services.ingestor.ingest([paper])
    post = PaperPost(
        subscription_id=None, digest_date=dt.date(2026, 8, 18), rank=1, paper=paper, summary="A summary.",
        summary_note=None, why="", layout="thread_per_paper", marker="pb-digest",
    )  # fmt: skip
    async with world.bot() as bot:
        message_id = await bot.digest_poster.post_paper(world.channel(), post, None)
        thread = message_id  # the post's thread has the post's id
        assert world.fake.state.channels[thread]["name"] == "Mistral 7B"
        question = await world.fake.dispatch_message(thread, "How big is the rolling buffer cache?")
        answer = await world.fake.wait_for_message(thread, after=int(question["id"]), timeout=120)
    assert fake_arxiv.paths() == ["/html/2310.06825", "/e-print/2310.06825"]  # fetched for the thread
    first, *_ = sources_lines(answer)
    assert first.startswith("**[1]** [Mistral 7B](https://arxiv.org/abs/2310.06825)")
    # The e-print's section (LaTeX has no pages); the passage may be body text or a figure caption.
    assert re.search(r" §2 Architectural details(, caption)?$", first)
