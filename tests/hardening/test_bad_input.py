"""Bad input: what people type into /ask, /search, /paper and mentions, and malformed paper payloads.

Each case checks the exact message the user (or the operator, for ingestion) reads: a clear
sentence, never a traceback or a generic failure, and nothing good is lost on the way. The real
bot runs on the real discord.py against the fake Discord over a real Qdrant Edge index; the LLM is
the scripted OpenAI-compatible server; ingestion runs the real CLI against a local HTTP server
that stands in for Hugging Face and arXiv.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bot.app.cli import EXIT_REJECTED, main
from bot.core.config import load_settings
from bot.core.papers import Paper
from bot.retrieval.index import open_index
from tests.conftest import ROOT, SHARED_DATA
from tests.fakediscord import FakeDiscord
from tests.support.discord_world import World, final_message, refusal
from tests.support.paperbot_discord import build_index, reset_logging, seed_papers
from tests.support.scripted_llm import prompt_text

CALLBACK = "POST /interactions/{interaction_id}/{interaction_token}/callback"
VIBE = "2608.15265"  # VibeWorlding, a real Hugging Face daily paper of the seed corpus
VIBE_TITLE = "VibeWorlding: Can Multimodal Agents Construct 3D Open Worlds End-to-End?"
EMPTY_QUESTION = "The question is empty; ask something about the papers"
EMPTY_QUERY = "The search query is empty; type a few words describing the papers you want"
ONLY_LINKS = "Only arxiv.org and huggingface.co/papers links are accepted."
NOT_A_PAPER_LINK = "That link is not an arXiv abstract/PDF or a Hugging Face paper page."
NOT_AN_ID = "{} is not an arXiv id (expected something like 2405.15738 or 2405.15738v2)."
GIVE_AN_ID = "Give an arXiv id (2405.15738) or an arxiv.org / huggingface.co/papers link."
MASKED_LINK = re.compile(r"\[([^\[\]]*)\]\(([^()\s]*(?:\([^()\s]*\))?[^()\s]*)\)")

# A paper whose metadata hides links behind innocent text.
MASKED = Paper(
    paper_id="2609.00777",
    arxiv_id="2609.00777",
    title="Masked [links](https://evil.example/title) in paper metadata",
    abstract=(
        "We show that [the official code](javascript:alert(document.cookie)) and "
        "[https://arxiv.org/abs/2405.15738](https://evil.example/phish) hide where they lead. "
        "Masked links in abstracts are a phishing vector for bots that quote them."
    ),
    authors=["[Mallory](https://evil.example/author)", "Eve"],
    published=dt.date(2026, 8, 19),
)


@pytest.fixture(autouse=True)
def _isolated_logging() -> None:
    reset_logging()


@pytest.fixture(scope="module")
def discord_seed_index(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    """The world's index (overrides the plugin's): the seed corpus plus the masked-link paper."""
    path = tmp_path_factory.mktemp("bad_input") / "qdrant"
    build_index(path, embedder, [*seed_papers(), MASKED])
    return path


# -- helpers --------------------------------------------------------------------------------------


def defanged(text: str) -> str:
    """How the bot shows a masked link: its label, then where it really goes."""
    while (plain := re.sub(r"\[([^\[\]]*)\]\(", r"\1 (", text)) != text:
        text = plain
    return text


def shown_texts(fake: FakeDiscord) -> list[str]:
    """Every text the bot put on screen: contents and the embeds' title, description and fields."""
    texts = []
    for message in fake.bot_messages():
        texts.append(message["content"])
        for embed in message["embeds"]:
            texts += [embed.get("title", ""), embed.get("description", "")]
            texts += [f["value"] for f in embed.get("fields", [])]
    for request in fake.requests_to(CALLBACK):  # immediate replies are not stored as messages
        texts.append(str((request.json.get("data") or {}).get("content") or ""))
    return texts


def hidden_links(texts: list[str]) -> list[tuple[str, str]]:
    """Masked links that render (not in inline code) and are not one of the bot's own arXiv links."""
    return [
        (label, target)
        for text in texts
        for label, target in MASKED_LINK.findall(re.sub(r"`[^`]*`", "", text))
        if not target.startswith(("https://arxiv.org/abs/", "https://arxiv.org/pdf/"))
    ]


def generation_questions(world: World, start: int) -> set[str]:
    """The question the answer prompts carried (after 'Question:'), for requests since `start`."""
    return {
        prompt_text(r.json).rsplit("\nQuestion: ", 1)[1].split("\n", 1)[0]
        for r in world.llm.requests[start:]
        if r.path.endswith("/completions")
    }


def about(question: str) -> str:
    """The scripted model's answer (tests.support.paperbot_discord.default_responder), as shown."""
    return defanged(f"About “{question}”: see the first paper [1].")


# -- /ask -----------------------------------------------------------------------------------------

ASK_REFUSED = {
    "whitespace-only": " \t \n  ",
    "zero-width-only": "\u200b\u200c\u200d\u2060\ufeff",
    "control-characters-only": "\x00\x07\x1b\x7f",
    "direction-marks-only": "\u200e\u200f\u202e\u2066",
}

ASK_ANSWERED = {  # what was typed → the question the model is given
    "control-characters": ("What\x00 is\x07 SHERL?\x1b\x7f", "What is SHERL?"),
    "zero-width-inside-words": ("What is SH\u200bERL\u2060?", "What is SHERL?"),
    "rtl-text": ("ما هو SHERL؟ كيف يوفر الذاكرة؟", "ما هو SHERL؟ كيف يوفر الذاكرة؟"),
    "rtl-override": ("What is \u202eSHERL\u202c?", "What is SHERL?"),
    "code-block": (
        "```python\nimport os\nos.system('rm -rf /')\n```\nwhat does SHERL do?",
        "```python import os os.system('rm -rf /') ``` what does SHERL do?",
    ),
    "markdown-javascript-link": (
        "[click me](javascript:alert(1)) what is SHERL?",
        "[click me](javascript:alert(1)) what is SHERL?",
    ),
    "masked-link": (
        "[https://arxiv.org/abs/2405.15738](https://evil.example/phish) what is SHERL?",
        "[https://arxiv.org/abs/2405.15738](https://evil.example/phish) what is SHERL?",
    ),
    "markdown-heading-and-spoiler": ("# SHERL\n||what is it?|| **now**", "# SHERL ||what is it?|| **now**"),
}


@pytest.mark.parametrize("typed", list(ASK_REFUSED.values()), ids=list(ASK_REFUSED))
async def test_ask_refuses_a_question_with_nothing_visible(world: World, typed: str) -> None:
    async with world.bot():
        text = await refusal(await world.fake.dispatch_interaction("ask", {"question": typed}))
    assert text == EMPTY_QUESTION
    assert world.llm.requests == []  # refused before any work


@pytest.mark.parametrize(("typed", "seen"), list(ASK_ANSWERED.values()), ids=list(ASK_ANSWERED))
async def test_ask_answers_odd_but_real_questions_and_shows_no_hidden_link(
    world: World, typed: str, seen: str
) -> None:
    async with world.bot():
        answer = await final_message(await world.fake.dispatch_interaction("ask", {"question": typed}))
    assert generation_questions(world, 0) == {seen}  # cleaned, on one line, nothing else lost
    assert answer["content"] == about(seen)
    assert answer["embeds"][0]["title"] == "Sources"
    assert hidden_links(shown_texts(world.fake)) == []


async def test_ask_of_10000_characters_is_stopped_by_discord_and_the_bot_says_the_limit(
    world: World,
) -> None:
    fake = world.fake
    async with world.bot():
        ask = next(c for c in fake.state.global_commands.values() if c["name"] == "ask")
        question = next(o for o in ask["options"] if o["name"] == "question")
        with pytest.raises(ValueError, match=r"length 10000 is outside \[1, 1000\]"):
            await fake.dispatch_interaction("ask", {"question": "why " * 2500})
        # A mention has no option limit: the bot itself says what the limit is.
        asked = await fake.dispatch_message(world.channel(), f"<@{world.bot_id}> " + "x" * 10_000)
        told = await fake.wait_for_message(world.channel(), after=int(asked["id"]))
    assert question["max_length"] == 1000  # Discord's client refuses longer input before sending
    assert told["content"] == "The question is 10000 characters long; the limit is 1000"
    assert told["message_reference"]["message_id"] == asked["id"]
    assert world.llm.requests == []


# -- mentions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("typed", list(ASK_REFUSED.values()), ids=list(ASK_REFUSED))
async def test_mention_with_nothing_visible_gets_a_clear_reply(world: World, typed: str) -> None:
    fake = world.fake
    async with world.bot():
        asked = await fake.dispatch_message(world.channel(), f"<@{world.bot_id}> {typed}")
        told = await fake.wait_for_message(world.channel(), after=int(asked["id"]))
    # Whitespace alone is a bare mention; invisible characters are an empty question.
    hint = "Ask me something about the papers." if not typed.strip() else EMPTY_QUESTION
    assert told["content"] == hint
    assert world.llm.requests == []
    assert fake.requests_to("POST /channels/{channel_id}/messages/{message_id}/threads") == []


@pytest.mark.parametrize(("typed", "seen"), list(ASK_ANSWERED.values()), ids=list(ASK_ANSWERED))
async def test_mention_answers_odd_but_real_questions_in_a_thread(
    world: World, typed: str, seen: str
) -> None:
    fake = world.fake
    async with world.bot():
        asked = await fake.dispatch_message(world.channel(), f"<@{world.bot_id}> {typed}")
        answer = await fake.wait_for_message(int(asked["id"]))
    assert generation_questions(world, 0) == {seen}
    assert answer["content"] == about(seen)
    assert answer["embeds"][0]["title"] == "Sources"
    assert hidden_links(shown_texts(fake)) == []


# -- /search --------------------------------------------------------------------------------------

SEARCH_REFUSED = {
    "whitespace-only": ({"query": " \t  "}, EMPTY_QUERY),
    "zero-width-only": ({"query": "\u200b\u200d\ufeff"}, EMPTY_QUERY),
    "control-characters-only": ({"query": "\x00\x1b\x7f"}, EMPTY_QUERY),
    "since-masked-link": (
        {"query": "SHERL", "since": "`[x](https://evil.example)`"},
        "`since` must be a date like 2026-08-01 or a span like 7d, 2w, 3m, 1y; "
        "got `'[x](https://evil.example)'`.",
    ),
    "since-code-block": (
        {"query": "SHERL", "since": "```\n7d```"},
        "`since` must be a date like 2026-08-01 or a span like 7d, 2w, 3m, 1y; got `''' 7d'''`.",
    ),
}


@pytest.mark.parametrize(("options", "expected"), list(SEARCH_REFUSED.values()), ids=list(SEARCH_REFUSED))
async def test_search_refuses_bad_input_with_a_clear_message(
    world: World, options: dict[str, str], expected: str
) -> None:
    async with world.bot():
        text = await refusal(await world.fake.dispatch_interaction("search", options))
    assert text == expected
    assert hidden_links([text]) == []  # an echo in inline code renders nothing


SEARCH_FOUND = {  # odd queries still find the paper they name
    "control-characters": "SHERL\x00 memory\x07 efficient\x1b transfer learning",
    "zero-width-inside-words": "SH\u200bERL memory eff\u200dicient transfer learning",
    "rtl-override": "\u202eSHERL memory efficient transfer learning\u202c",
    "code-block": "```\nSHERL memory efficient transfer learning\n```",
    "markdown-link": "[SHERL](javascript:alert(1)) memory efficient transfer learning",
}


@pytest.mark.parametrize("query", list(SEARCH_FOUND.values()), ids=list(SEARCH_FOUND))
async def test_search_with_odd_characters_still_finds_the_paper(world: World, query: str) -> None:
    async with world.bot():
        results = await (
            await world.fake.dispatch_interaction("search", {"query": query, "limit": 3})
        ).original_message()
    assert results["embeds"][0]["title"].startswith("SHERL: Synthesizing High Accuracy")


async def test_search_echo_of_a_query_shows_no_hidden_link(world: World) -> None:
    query = "[click here](https://evil.example/phish) [a](javascript:alert(1))"
    async with world.bot():
        handle = await world.fake.dispatch_interaction("search", {"query": query, "since": "2030-01-01"})
        nothing = await handle.original_message()
    assert nothing["content"] == (
        "No papers found for “click here (https://evil.example/phish) a (javascript:alert(1))” "
        "since 2030-01-01."
    )
    assert hidden_links(shown_texts(world.fake)) == []


async def test_search_of_10000_characters_is_stopped_by_discord(world: World) -> None:
    async with world.bot():
        search = next(c for c in world.fake.state.global_commands.values() if c["name"] == "search")
        with pytest.raises(ValueError, match=r"length 10000 is outside \[1, 500\]"):
            await world.fake.dispatch_interaction("search", {"query": "q" * 10_000})
        # The longest query Discord lets through is answered (cut to what the models read).
        results = await (
            await world.fake.dispatch_interaction("search", {"query": "memory " * 70 + "SHERL"})
        ).original_message()
    assert next(o for o in search["options"] if o["name"] == "query")["max_length"] == 500
    assert results["embeds"]


# -- masked links in paper metadata ---------------------------------------------------------------


async def test_masked_links_in_titles_abstracts_and_authors_are_shown_for_what_they_are(
    world: World,
) -> None:
    fake = world.fake
    async with world.bot():
        card = await (
            await fake.dispatch_interaction("paper", {"id_or_url": MASKED.paper_id})
        ).original_message()
        found = await (
            await fake.dispatch_interaction("search", {"query": "masked links phishing vector", "limit": 3})
        ).original_message()
        answer = await final_message(
            await fake.dispatch_interaction("ask", {"question": "Are masked links a phishing vector?"})
        )
        world.llm.script(*[f"Answer: See [the code](javascript:alert(1)) and {MASKED.abstract} [1]"] * 2)
        quoted = await final_message(
            await fake.dispatch_interaction("ask", {"question": "What do masked links hide?"})
        )
    (embed,) = card["embeds"]
    assert embed["title"] == "Masked links (https://evil.example/title) in paper metadata"
    assert embed["description"] == (
        "We show that the official code (javascript:alert(document.cookie)) and "
        "https://arxiv.org/abs/2405.15738 (https://evil.example/phish) hide where they lead. "
        "Masked links in abstracts are a phishing vector for bots that quote them."
    )
    assert next(f["value"] for f in embed["fields"] if f["name"] == "Authors") == (
        "Mallory (https://evil.example/author), Eve"
    )
    assert embed["url"] == f"https://arxiv.org/abs/{MASKED.paper_id}"
    assert found["embeds"][0]["title"] == embed["title"]
    assert answer["embeds"][0]["title"] == "Sources"
    assert quoted["content"].startswith("See the code (javascript:alert(1)) and We show that the official")
    assert hidden_links(shown_texts(fake)) == []


# -- /paper ---------------------------------------------------------------------------------------


class OutsideHost:
    """A local HTTP server standing for any host outside the allow-list: it records every request."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                self.send_response(200)
                self.end_headers()

            do_POST = do_HEAD = do_GET

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OutsideHost:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def outside() -> Iterator[OutsideHost]:
    with OutsideHost() as host:
        yield host


NOT_AN_ID_ECHO = "not an id: echoed back as inline code"
PAPER_REFUSED = {  # typed (with {port} of the outside host) → the refusal
    "whitespace-only": ("   \t ", GIVE_AN_ID),
    "zero-width-only": ("\u200b\u2060", GIVE_AN_ID),
    "too-few-digits": ("2405.157", NOT_AN_ID_ECHO),
    "too-many-digits": ("24051.57389", NOT_AN_ID_ECHO),
    "version-without-number": ("2405.15738v", NOT_AN_ID_ECHO),
    "old-style-too-short": ("hep-th/99", NOT_AN_ID_ECHO),
    "path-traversal": ("../../etc/passwd", NOT_AN_ID_ECHO),
    "rtl-override-id": ("\u202e83751.5042", NOT_AN_ID_ECHO),
    "backtick-breakout": ("x` [click](javascript:alert(1)) `y",
                          NOT_AN_ID.format("`x' [click](javascript:alert(1)) 'y`")),
    "outside-ip": ("http://127.0.0.1:{port}/abs/2608.15265", ONLY_LINKS),
    "outside-localhost": ("http://localhost:{port}/papers/2608.15265", ONLY_LINKS),
    "outside-ipv6": ("http://[::1]:{port}/abs/2608.15265", ONLY_LINKS),
    "userinfo-trick": ("https://arxiv.org@127.0.0.1:{port}/abs/2608.15265", ONLY_LINKS),
    "lookalike-subdomain": ("https://arxiv.org.127.0.0.1.nip.io:{port}/abs/2608.15265", ONLY_LINKS),
    "scheme-relative": ("//127.0.0.1:{port}/abs/2608.15265", NOT_AN_ID_ECHO),
    "no-scheme-ip": ("127.0.0.1:{port}/abs/2608.15265", NOT_AN_ID_ECHO),
    "javascript": ("javascript:fetch('http://127.0.0.1:{port}')", ONLY_LINKS),
    "data-url": ("data:text/html,<img src=http://127.0.0.1:{port}/>", ONLY_LINKS),
    "masked-link": ("[2608.15265](http://127.0.0.1:{port}/)", ONLY_LINKS),
    "allowed-host-wrong-path": ("https://arxiv.org/list/cs.CL/recent?x=http://127.0.0.1:{port}",
                                NOT_A_PAPER_LINK),
}  # fmt: skip

PAPER_SHOWN = {  # typed → the card of VibeWorlding, and still no request anywhere
    "zero-width-inside": "2608.\u200b15265",
    "control-characters": "\x002608.15265\x07",
    "outside-host-in-query": "https://arxiv.org/abs/2608.15265?next=http://127.0.0.1:{port}/",
    "outside-host-in-fragment": "https://huggingface.co/papers/2608.15265#http://127.0.0.1:{port}/",
}


@pytest.fixture
def resolved_hosts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every host name anything in the process looks up from here on."""
    hosts: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def recording_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        hosts.append(str(host))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording_getaddrinfo)
    return hosts


@pytest.mark.parametrize(("typed", "expected"), list(PAPER_REFUSED.values()), ids=list(PAPER_REFUSED))
async def test_paper_refuses_invalid_ids_and_links_without_any_request(
    world: World, outside: OutsideHost, resolved_hosts: list[str], typed: str, expected: str
) -> None:
    fake = world.fake
    typed = typed.format(port=outside.port)
    if expected == NOT_AN_ID_ECHO:
        expected = NOT_AN_ID.format(f"`{typed}`")
    async with world.bot():
        before = len(fake.requests)
        text = await refusal(await fake.dispatch_interaction("paper", {"id_or_url": typed}))
        during = fake.requests[before:]
    assert text == expected
    assert [r.key for r in during] == [CALLBACK]  # the refusal, nothing else
    assert outside.requests == []  # nothing reached the outside host …
    assert set(resolved_hosts) <= {"127.0.0.1"}  # … nor any other (the fake Discord is 127.0.0.1)
    assert hidden_links([text]) == []


@pytest.mark.parametrize("typed", list(PAPER_SHOWN.values()), ids=list(PAPER_SHOWN))
async def test_paper_accepts_ids_and_allowed_links_with_noise_and_fetches_nothing(
    world: World, outside: OutsideHost, resolved_hosts: list[str], typed: str
) -> None:
    async with world.bot():
        card = await (
            await world.fake.dispatch_interaction("paper", {"id_or_url": typed.format(port=outside.port)})
        ).original_message()
    assert card["embeds"][0]["title"] == VIBE_TITLE
    assert outside.requests == []
    assert set(resolved_hosts) <= {"127.0.0.1"}


async def test_paper_of_10000_characters_is_stopped_by_discord(world: World) -> None:
    async with world.bot():
        paper = next(c for c in world.fake.state.global_commands.values() if c["name"] == "paper")
        with pytest.raises(ValueError, match=r"length 10000 is outside \[1, 300\]"):
            await world.fake.dispatch_interaction("paper", {"id_or_url": "2" * 10_000})
    assert next(o for o in paper["options"] if o["name"] == "id_or_url")["max_length"] == 300


# -- malformed paper payloads (ingestion) ---------------------------------------------------------

HF_RAW = (SHARED_DATA / "hf_daily_papers" / "raw_api_daily_papers_2026-08-18.json").read_bytes()
ATOM = (SHARED_DATA / "arxiv" / "arxiv_api_search_testing_m100.xml").read_bytes()
FIXTURES = ROOT / "tests" / "fixtures"
HF_CUT = HF_RAW[: len(HF_RAW) // 3]
HF_CUT_LAST_LINE = HF_CUT.count(b"\n") + 1
ATOM_CUT = ATOM[: len(ATOM) // 3]
ERROR_FEED = b"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>ArXiv Query: search_query=cat:cs.CL</title>
  <entry>
    <id>http://arxiv.org/api/errors#incorrect_id_format_for_1234.12345</id>
    <title>Error</title>
    <summary>incorrect id format for 1234.12345</summary>
  </entry>
</feed>
"""


def complete_hf_items(data: bytes) -> list[str]:
    """The arXiv ids of the array items that lie wholly inside `data` (a cut-off API response)."""
    text, decoder, ids = HF_RAW.decode(), json.JSONDecoder(), []
    position = text.index("[") + 1
    while True:
        position = len(text) - len(text[position:].lstrip(" \n\r\t,"))
        if text.startswith("]", position):
            return ids
        item, position = decoder.raw_decode(text, position)
        if position > len(data):
            return ids
        ids.append(item["paper"]["id"])


def complete_atom_entries(data: bytes) -> list[str]:
    found = re.findall(rb"<entry>\s*<id>http://arxiv.org/abs/([^<]+?)(?:v\d+)?</id>", data)
    return [i.decode() for i in found][: data.count(b"</entry>")]


INGEST_CASES = {  # source → (body served, the rejects printed, the arXiv ids that must be stored)
    "hf-malformed-daily-file": (
        None, str(FIXTURES / "hf_daily_malformed.jsonl"),
        [
            "{source}:2: invalid JSON: Unterminated string starting at column 41",
            "{source}:3: expected a daily-papers object, got a JSON string",
            "{source}:4: missing title",
            "{source}:5: paper.id 'not-an-id' is not an arXiv id",
        ],
        ["2405.15032", "2405.15682"],
    ),
    "hf-list-of-strings-file": (
        None, str(FIXTURES / "hf_daily_list_of_strings.json"),
        [f"{{source}}:{n}: expected a daily-papers object, got a JSON string" for n in (2, 3, 4)],
        [],
    ),
    "hf-api-list-of-strings": (
        b'[\n  "2405.15738",\n  "2405.14333"\n]', "hf:2026-08-18",
        [f"{{source}}:{n}: expected a daily-papers object, got a JSON string" for n in (2, 3)],
        [],
    ),
    "hf-api-cut-off": (
        HF_CUT, "hf:2026-08-18",
        [f"{{source}}:{HF_CUT_LAST_LINE}: invalid JSON: Expecting property name enclosed in double quotes "
         "at column 4"],
        complete_hf_items(HF_CUT),
    ),
    "hf-api-error-object": (
        b'{"error": "Invalid date"}', "hf:2026-08-18",
        ["{source}:1: expected a JSON array, got an error: Invalid date"], [],
    ),
    "hf-api-empty-body": (b"", "hf:2026-08-18",
                          ["{source}:1: expected a JSON array, got an empty response"], []),
    "hf-api-html-page": (b"<html><body>Sign in</body></html>", "hf:2026-08-18",
                         ["{source}:1: expected a JSON array"], []),
    "arxiv-api-cut-off": (
        ATOM_CUT, "arxiv:cs.CL",
        [
            "{source}:830: entry cut off: the feed breaks inside it",
            "{source}:836: malformed Atom feed (no element found): read only the 33 entries before it",
        ],
        complete_atom_entries(ATOM_CUT),
    ),
    "arxiv-api-error-entry": (ERROR_FEED, "arxiv:cs.CL",
                              ["{source}:4: arXiv API error: incorrect id format for 1234.12345"], []),
    "arxiv-api-html-page": (b"<html><body>Service unavailable</body></html>", "arxiv:cs.CL",
                            ["{source}: not a readable Atom feed: no feed element"], []),
}  # fmt: skip


class PayloadServer(OutsideHost):
    """Serves one body for every GET: the Hugging Face and arXiv APIs as a test wants them."""

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.server.RequestHandlerClass.do_GET = _serve(body)  # type: ignore[attr-defined]


def _serve(body: bytes) -> Any:
    def do_get(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return do_get


@pytest.mark.parametrize(
    ("body", "source", "rejects", "stored"), list(INGEST_CASES.values()), ids=list(INGEST_CASES)
)
def test_malformed_payloads_are_reported_line_by_line_and_the_good_records_kept(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, embedder: Any,
    body: bytes | None, source: str, rejects: list[str], stored: list[str],
) -> None:  # fmt: skip
    # The model, loaded once for the session.
    monkeypatch.setattr("bot.app.services.open_embedder", lambda settings, cache_dir: embedder)
    server = PayloadServer(body) if body is not None else None
    if server is not None:
        server.__enter__()
        base = f"http://127.0.0.1:{server.port}"
        monkeypatch.setenv("SOURCES_HF_API_BASE", base)
        monkeypatch.setenv("SOURCES_ARXIV_API_BASE", base)
    try:
        code = main(["ingest", "--no-progress", source])
        ingested = capsys.readouterr()
    finally:
        if server is not None:
            server.__exit__(None, None, None)
    printed = [line for line in ingested.err.splitlines() if line.startswith("rejected ")]
    assert printed == [f"rejected {r.format(source=source)}" for r in rejects]
    assert code == EXIT_REJECTED  # the operator's script sees that something was rejected
    assert "Traceback" not in ingested.err + ingested.out
    summary = ingested.out.strip().splitlines()[-1]
    assert f"/ new {len(stored)} / " in summary and f"/ rejected {len(rejects)} (" in summary
    # Every good record before the damage is in the index, and nothing else.
    assert f"(stored papers: {len(stored)}," in summary
    assert set(asyncio.run(_stored(stored, embedder.dimensions))) == set(stored)


async def _stored(paper_ids: list[str], dimensions: int) -> list[str]:
    index = open_index(load_settings())
    await index.ensure_collection(dimensions)
    try:
        return list(await index.fetch_papers(paper_ids))
    finally:
        await index.close()
