"""Personal research tools without Discord: citations (checked by a BibTeX parser), .bib import, caps,
personal DM digests through the digest ledger, and forget-me on real SQLite and PostgreSQL.

Real parts: the day's Hugging Face papers embedded in Qdrant Edge, the production wiring
(`build_services`), the real `openai` client against the scripted server (digest summaries)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bibtexparser
import pytest
from sqlalchemy import BigInteger, Integer, func, select

from bot.app.cli import EXIT_OK, EXIT_USAGE, main
from bot.app.services import DigestServices, Services
from bot.core.config import CoreSettings, LibrarySettings, Settings
from bot.core.errors import UserInputError
from bot.core.papers import Paper
from bot.db import Database, upgrade_schema
from bot.db.tables import Base
from bot.digest.delivery import PaperPost
from bot.digest.sources import directory_fetcher
from bot.ingest.sources import parse_bytes
from bot.library.citations import CitedPaper, format_citations
from bot.library.digests import DMClosedError, PersonalHeader
from tests.support.digest import HF_DAY, HF_RAW, summary_responder
from tests.support.paperbot_discord import build_index, open_services
from tests.support.scripted_llm import ScriptedLLMServer

DAY_PAPERS = parse_bytes(HF_RAW.read_bytes(), source_name=f"hf:{HF_DAY}", fmt="hf_json").papers
BY_ID = {p.paper_id: p for p in DAY_PAPERS}
ALICE, BOB, CAROL = 1_000_000_000_000_001, 1_000_000_000_000_002, 2**63 - 1  # snowflakes, the largest too


@pytest.fixture(scope="module")
def day_index(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    path = tmp_path_factory.mktemp("library-index") / "qdrant"
    build_index(path, embedder, DAY_PAPERS)
    return path


@dataclass
class RecordingDMs:
    """An in-memory `PersonalPoster` (our own boundary, not Discord); `closed` users raise 50007."""

    closed: set[int] = field(default_factory=set)
    sent: list[tuple[int, str, Any]] = field(default_factory=list)  # (user, kind, header or post)
    next_id: int = 5000

    async def _send(self, user_id: int, kind: str, item: Any) -> int:
        if user_id in self.closed:
            raise DMClosedError("Cannot send messages to this user")
        self.next_id += 1
        self.sent.append((user_id, kind, item))
        return self.next_id

    async def send_header(self, user_id: int, header: PersonalHeader) -> int:
        return await self._send(user_id, "header", header)

    async def send_paper(self, user_id: int, post: PaperPost) -> int:
        return await self._send(user_id, "paper", post)

    async def find_recent(self, user_id: int, marker: str) -> list[tuple[int, str]]:
        return []

    def papers_to(self, user_id: int) -> list[PaperPost]:
        return [item for user, kind, item in self.sent if user == user_id and kind == "paper"]


@dataclass
class World:
    services: Services
    database: Database
    llm: ScriptedLLMServer

    @property
    def state(self) -> DigestServices:
        assert self.services.state is not None
        return self.services.state


@pytest.fixture(params=["sqlite", "postgresql"])
async def world(
    request: pytest.FixtureRequest, day_index: Path, embedder: Any, tmp_path: Path
) -> AsyncIterator[World]:
    sources = tmp_path / "sources"
    sources.mkdir()
    shutil.copy(HF_RAW, sources / f"hf_daily_{HF_DAY}.json")
    url = (
        f"sqlite:///{tmp_path / 'state.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres").create_database()
    )
    settings = Settings(
        core=CoreSettings(data_dir=tmp_path / "data"),
        library=LibrarySettings(max_saved=5, max_follows=4, max_bib_bytes=20_000),
    )
    database = Database(url, busy_timeout_ms=5000)
    await upgrade_schema(database.engine)
    async with (
        ScriptedLLMServer(responder=summary_responder) as llm,
        open_services(
            day_index, embedder, llm, settings, database=database, fetch=directory_fetcher(sources)
        ) as services,
    ):
        yield World(services, database, llm)
    await database.close()


def parse_bibtex(text: str) -> list[dict[str, str]]:
    entries = bibtexparser.loads(text).entries
    assert entries, text
    return entries


# ------------------------------------------------------------------ citations


def test_cite_cli_output_parses_as_bibtex_and_unknown_ids_fail(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", "--no-progress", str(HF_RAW)]) == EXIT_OK
    capsys.readouterr()
    first, second = DAY_PAPERS[0], DAY_PAPERS[5]
    code = main(["cite", first.paper_id, f"https://arxiv.org/abs/{second.paper_id}v2"])
    out, _ = capsys.readouterr()
    assert code == EXIT_OK
    entries = parse_bibtex(out)
    assert [e["eprint"] for e in entries] == [first.paper_id, second.paper_id]
    for entry, paper in zip(entries, (first, second), strict=True):
        assert entry["ENTRYTYPE"] == "misc" and entry["archiveprefix"] == "arXiv"
        assert entry["title"].strip("{}") == paper.title
        assert entry["author"].split(" and ") == paper.authors
        assert entry["year"] == str(paper.published.year if paper.published else "")
        assert entry["url"] == f"https://arxiv.org/abs/{paper.paper_id}"

    code = main(["cite", first.paper_id, "2999.99999", "--format", "bibtex"])
    out, err = capsys.readouterr()
    assert code == EXIT_USAGE and out == ""
    assert "not in the index: 2999.99999" in err

    code = main(["cite", first.paper_id, "--format", "csl-json"])
    record = json.loads(capsys.readouterr()[0])[0]
    assert code == EXIT_OK and record["title"] == first.title and record["number"] == first.paper_id
    code = main(["cite", first.paper_id, "--format", "ris"])
    ris = capsys.readouterr()[0]
    assert code == EXIT_OK and ris.startswith("TY  - GEN") and ris.rstrip().endswith("ER  -")
    assert f"TI  - {first.title}" in ris


def test_bibtex_escapes_latex_so_a_hostile_title_round_trips_through_the_parser() -> None:
    hostile = Paper(
        paper_id="2401.00001", arxiv_id="2401.00001", title="100% {Braces} & C_1 costs $5 #1 } @misc{x,",
        authors=["Ana Ñúñez", "Bo } Li"], published=dt.date(2024, 1, 2),
    )  # fmt: skip
    same_key = hostile.model_copy(update={"paper_id": "2401.00002", "arxiv_id": "2401.00002"})
    text = format_citations([CitedPaper(hostile, note="read §3 {fast}"), CitedPaper(same_key)], "bibtex")
    entries = parse_bibtex(text)
    assert len(entries) == 2 and entries[0]["ID"] != entries[1]["ID"]  # clashing keys get a suffix
    assert entries[0]["eprint"] == "2401.00001" and entries[1]["eprint"] == "2401.00002"
    assert entries[0]["title"].startswith(
        r"{100\% \textbraceleft{}Braces\textbraceright{} \& C\_1 costs \$5 \#1"
    )
    assert entries[0]["title"].endswith(r"\textbraceright{} @misc\textbraceleft{}x,}")  # the whole title
    assert entries[0]["author"] == r"Ana Ñúñez and Bo \textbraceright{} Li"
    assert entries[0]["note"] == r"read §3 \textbraceleft{}fast\textbraceright{}"


# ------------------------------------------------------------------ library, import, caps


async def test_save_note_export_remove_and_the_cap(world: World) -> None:
    library = world.state.library
    ids = [p.paper_id for p in DAY_PAPERS[:6]]
    for paper_id in ids[:5]:
        assert (await library.save(ALICE, paper_id)).added
    assert not (await library.save(ALICE, ids[0])).added  # already saved
    with pytest.raises(UserInputError, match=r"library is full \(5 papers\)"):
        await library.save(ALICE, ids[5])
    with pytest.raises(UserInputError, match="not a paper in paperbot's index"):
        await library.save(ALICE, "2999.99999")
    await library.note(ALICE, f"arXiv:{ids[1]}", "method in §2")
    with pytest.raises(UserInputError, match="not in your library"):
        await library.note(BOB, ids[1], "not mine")
    page = await library.page(ALICE, 1)
    assert page.total == 5 and page.pages == 1 and {i.paper.paper_id for i in page.items} == set(ids[:5])
    assert (await library.page(BOB, 1)).total == 0  # private: Bob sees none of Alice's papers

    exported = await library.export(ALICE, "bibtex")
    entries = parse_bibtex(exported.text)
    assert exported.filename.endswith(".bib") and [e["eprint"] for e in entries] == ids[:5]
    assert next(e for e in entries if e["eprint"] == ids[1])["note"] == "method in §2"
    markdown = (await library.export(ALICE, "markdown")).text
    assert markdown.count("\n- **") + 1 == 5 and "> method in §2" in markdown
    with pytest.raises(UserInputError, match="library is empty"):
        await library.export(BOB, "ris")

    assert await library.remove(ALICE, ids[0]) == ids[0]
    assert (await library.save(ALICE, ids[5])).added  # room again


async def test_import_matches_by_arxiv_id_doi_and_title_and_refuses_bad_files(world: World) -> None:
    a, b, c = DAY_PAPERS[2], DAY_PAPERS[3], DAY_PAPERS[4]
    bib = f"""
@misc{{byid, title = {{Whatever}}, eprint = {{{a.paper_id}v3}}, archivePrefix = {{arXiv}}}}
@article{{bydoi, title = {{Other}}, doi = {{10.48550/arXiv.{b.paper_id}}}}}
@inproceedings{{bytitle, title = {{{{{c.title.upper()}}}}}, booktitle = {{Proc.}}}}
@article{{unknown, title = {{A paper nobody indexed about medieval falconry}}}}
""".encode()
    report = await world.state.library.import_bib(ALICE, bib)
    assert report.entries == 4
    assert sorted(report.saved) == sorted([a.paper_id, b.paper_id, c.paper_id])
    assert report.unmatched == ["unknown"] and report.already == 0
    again = await world.state.library.import_bib(ALICE, bib)
    assert again.saved == [] and again.already == 3

    with pytest.raises(UserInputError, match="not UTF-8"):
        await world.state.library.import_bib(ALICE, "@misc{k, title={Café}}".encode("latin-1"))
    with pytest.raises(UserInputError, match="the limit is"):
        await world.state.library.import_bib(ALICE, b"@misc{k, title={x}}" + b" " * 30_000)
    with pytest.raises(UserInputError, match="No BibTeX entries"):
        await world.state.library.import_bib(ALICE, b"just some text, no entries {{{")


async def test_follow_rules_and_cap(world: World) -> None:
    follows = world.state.follows
    follow, added = await follows.add(ALICE, "author", "Parsa  Mazaheri")
    assert added and follow.label() == "author Parsa Mazaheri"
    assert (await follows.add(ALICE, "author", "parsa mazaheri"))[1] is False  # same author
    with pytest.raises(UserInputError, match="not an arXiv category"):
        await follows.add(ALICE, "category", "computer vision")
    for kind, value in (("topic", "GUI agents"), ("category", "cs.CV"), ("query", "diffusion")):
        await follows.add(ALICE, kind, value)
    with pytest.raises(UserInputError, match="You follow 4 things already"):
        await follows.add(ALICE, "query", "one too many")
    assert (await follows.remove(ALICE, "#2")).value == "GUI agents"
    assert (await follows.remove(ALICE, "Cs.CV")).kind == "category"
    with pytest.raises(UserInputError, match="don't follow"):
        await follows.remove(BOB, "diffusion")


# ------------------------------------------------------------------ personal digests


async def test_personal_digests_summarize_each_paper_once_say_why_and_send_once(world: World) -> None:
    follows = world.state.follows
    author = "Parsa Mazaheri"  # on two of the day's papers
    await follows.add(ALICE, "author", author)
    await follows.add(ALICE, "topic", "GUI agents")
    await follows.add(BOB, "author", author)  # the same papers as Alice: summarized once
    await follows.add(BOB, "query", "diffusion")
    await follows.add(CAROL, "query", "falconry")  # matches nothing today
    await follows.configure(CAROL, delivery="off", cadence=None)
    dms = RecordingDMs()

    report = await world.state.personal.run(HF_DAY, poster=dms)

    assert report.users == 2 and report.delivered == 2 and report.failed == 0  # Carol's is off
    alice, bob = dms.papers_to(ALICE), dms.papers_to(BOB)
    by_author = {p.paper_id for p in DAY_PAPERS if author in p.authors}
    assert len(by_author) == 2 and by_author <= {p.paper.paper_id for p in alice}
    assert by_author <= {p.paper.paper_id for p in bob}
    assert all(f"follows author {author}" in p.why for p in alice + bob if p.paper.paper_id in by_author)
    assert any("follows topic “GUI agents”" in p.why for p in alice)
    assert all("diffusion" in (p.paper.title + p.paper.abstract).lower() for p in bob if "query" in p.why)
    distinct = {p.paper.paper_id for p in alice + bob}
    calls = world.llm.requests_to("/v1/chat/completions")
    assert report.distinct_papers == len(distinct) == len(calls) == report.llm_summaries
    assert all(p.summary.startswith("TL;DR: Summary of") for p in alice + bob)

    again = await world.state.personal.run(HF_DAY, poster=dms)  # the ledger: nothing twice
    assert again.papers_sent == 0 and len(dms.papers_to(ALICE)) == len(alice)
    assert len(world.llm.requests_to("/v1/chat/completions")) == len(calls)


async def test_feedback_and_saved_papers_steer_their_owners_picks(world: World) -> None:
    await world.state.follows.add(ALICE, "query", "agent")
    await world.state.follows.add(BOB, "query", "agent")
    plain = RecordingDMs()
    await world.state.personal.run(HF_DAY, poster=plain, user_ids={BOB})
    baseline = [p.paper.paper_id for p in plain.papers_to(BOB)]
    liked_id, disliked_id = baseline[-1], baseline[0]
    await world.state.library.save(ALICE, liked_id)  # a saved paper counts as liked
    await world.state.follows.feedback(ALICE, disliked_id, -1)
    steered = RecordingDMs()
    await world.state.personal.run(HF_DAY, poster=steered, user_ids={ALICE})
    picks = steered.papers_to(ALICE)
    order = [p.paper.paper_id for p in picks]
    assert order[0] == liked_id and "like papers you 👍 or saved" in picks[0].why
    assert disliked_id not in order or order.index(disliked_id) > 0


async def test_closed_dms_keep_follows_and_the_user_is_told_once(world: World) -> None:
    await world.state.follows.add(ALICE, "author", "Parsa Mazaheri")
    dms = RecordingDMs(closed={ALICE})
    report = await world.state.personal.run(HF_DAY, poster=dms)
    assert report.dm_closed == 1 and dms.sent == []
    follows, settings = await world.state.follows.list(ALICE)
    assert len(follows) == 1 and settings.dm_closed
    assert (await world.state.personal.run(HF_DAY, poster=dms)).users == 0  # not tried again
    notice = await world.state.library.dm_notice(ALICE)
    assert notice is not None and "direct messages are closed" in notice
    assert await world.state.library.dm_notice(ALICE) is None  # told once
    dms.closed.clear()
    report = await world.state.personal.run(HF_DAY, poster=dms)  # after telling them, DMs are tried again
    assert report.delivered == 1 and dms.papers_to(ALICE)


# ------------------------------------------------------------------ forget-me


async def _rows_naming(database: Database, user_id: int) -> dict[str, int]:
    """Rows of every table with `user_id` in any integer column."""
    found: dict[str, int] = {}
    async with database.snapshot() as session:
        for table in Base.metadata.sorted_tables:
            # Snowflakes live in BIGINT columns; a 32-bit column cannot hold one (PostgreSQL refuses
            # even to compare it with one).
            columns = [
                c for c in table.columns
                if isinstance(c.type, BigInteger) or (isinstance(c.type, Integer) and user_id < 2**31)
            ]  # fmt: skip
            for column in columns:
                count = (
                    await session.execute(select(func.count()).select_from(table).where(column == user_id))
                ).scalar_one()
                if count:
                    found[f"{table.name}.{column.name}"] = count
    return found


async def test_forget_me_leaves_no_row_about_the_user(world: World) -> None:
    state = world.state
    for user in (CAROL, BOB):
        await state.library.save(user, DAY_PAPERS[0].paper_id)
        await state.library.note(user, DAY_PAPERS[0].paper_id, "a note")
        await state.follows.add(user, "author", "Parsa Mazaheri")
        await state.follows.configure(user, delivery="dm", cadence="daily")
        await state.follows.feedback(user, DAY_PAPERS[1].paper_id, 1)
        await state.repo.record_feedback(
            guild_id=7, channel_id=8, message_id=9 + user % 1000, paper_id="x", user_id=user, value=1
        )
    await state.personal.run(HF_DAY, poster=RecordingDMs(closed={BOB}))  # Carol's ledger; Bob: dm_closed
    before = await _rows_naming(world.database, CAROL)
    assert set(before) >= {
        "library_papers.user_id", "follows.user_id", "personal_settings.user_id",
        "personal_feedback.user_id", "post_ledger.channel_id", "feedback.user_id",
    }  # fmt: skip

    removed = await state.library.forget_me(CAROL)

    assert removed == sum(before.values())
    assert await _rows_naming(world.database, CAROL) == {}
    kept = await _rows_naming(world.database, BOB)  # nobody else's rows go
    assert {
        "library_papers.user_id",
        "follows.user_id",
        "personal_settings.user_id",
        "feedback.user_id",
    } <= set(kept)


class Crash(BaseException):
    """Stands for the process being killed mid-digest (no `except Exception` catches it)."""


async def test_a_crash_mid_digest_resumes_without_sending_anything_twice(world: World) -> None:
    await world.state.follows.add(ALICE, "author", "Parsa Mazaheri")
    await world.state.follows.add(ALICE, "topic", "GUI agents")

    class CrashingDMs(RecordingDMs):
        async def send_paper(self, user_id: int, post: PaperPost) -> int:
            message_id = await super().send_paper(user_id, post)
            if len(self.papers_to(user_id)) == 2:
                raise Crash  # the DM went out; its message id was never recorded
            return message_id

        async def find_recent(self, user_id: int, marker: str) -> list[tuple[int, str]]:
            return [
                (5000 + n, item.marker) for n, (user, _, item) in enumerate(self.sent, 1) if user == user_id
            ]

    dms = CrashingDMs()
    with pytest.raises(Crash):
        await world.state.personal.run(HF_DAY, poster=dms)
    first = [p.paper.paper_id for p in dms.papers_to(ALICE)]
    assert len(first) == 2

    resumed = CrashingDMs(sent=list(dms.sent))  # the same DM channel: what was sent before is there
    report = await world.state.personal.run(HF_DAY, poster=resumed)
    papers = [p.paper.paper_id for p in resumed.papers_to(ALICE)]
    assert report.delivered == 1 and len(papers) == len(set(papers))  # nothing twice
    assert papers[:2] == first and len(papers) > 2  # the rest, after the two found in the DM
    entries = await world.state.repo.digest_entries(ALICE, HF_DAY)
    assert all(e.posted for e in entries) and len(entries) == 1 + len(papers)


async def test_weekly_users_get_the_weeks_papers_on_their_day_only(world: World) -> None:
    await world.state.follows.add(ALICE, "author", "Parsa Mazaheri")
    await world.state.follows.configure(ALICE, delivery=None, cadence="weekly")
    assert world.state.personal.weekly_day == 0 and HF_DAY.weekday() == 1  # Mondays; the day is a Tuesday
    dms = RecordingDMs()
    assert (await world.state.personal.run(HF_DAY, poster=dms)).users == 0
    monday = HF_DAY + dt.timedelta(days=6)  # the Monday after: the week back to Tuesday holds HF_DAY
    report = await world.state.personal.run(monday, poster=dms)
    assert report.users == 1 and report.delivered == 1
    assert {p.paper.paper_id for p in dms.papers_to(ALICE)} == {
        p.paper_id for p in DAY_PAPERS if "Parsa Mazaheri" in p.authors
    }
    assert any(kind == "header" and item.cadence == "weekly" for _, kind, item in dms.sent)
