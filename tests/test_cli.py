"""The CLI end to end, in-process: exit codes, the summary line, rejects with file:line, JSON contract."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bot.app.cli import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, main
from tests.conftest import SEED_PAGE, SHARED_DATA
from tests.support.scripted_llm import ScriptedLLMServer, ScriptedReply

HF_DAY = SHARED_DATA / "hf_daily_papers" / "raw_api_daily_papers_2026-08-18.json"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ingest_reports_rejects_with_file_and_line_and_keeps_the_rest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "hf_mixed.jsonl"
    good_line = json.dumps(json.loads(HF_DAY.read_text())[0])
    bad.write_text(f'{good_line}\n"just a string, as in some saved daily files"\n{{not json\n')
    code, out, err = run(capsys, "ingest", "--no-progress", str(bad))
    assert code == EXIT_REJECTED
    assert f"rejected {bad}:2" in err and f"rejected {bad}:3" in err
    assert "read 3 / new 1 / updated 0 / duplicates 0 / rejected 2" in out


def test_ingest_twice_adds_nothing_and_search_json_contract(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "ingest", "--no-progress", str(SEED_PAGE), str(HF_DAY))
    assert code == EXIT_OK
    assert "new 77" in out  # 48 page papers + 29 HF papers, no overlap
    code, out, _ = run(capsys, "ingest", "--no-progress", str(SEED_PAGE))
    assert code == EXIT_OK and "new 0 /" in out and "duplicates 48" in out

    queries = tmp_path / "q.jsonl"
    queries.write_text(
        '{"q": "memory efficient transfer learning", "target": "x"}\n\n{"q": "video generation"}\n'
    )
    code, out, _ = run(capsys, "search", "--json", "--limit", "4", "--queries-file", str(queries))
    assert code == EXIT_OK
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["query"] for line in lines] == ["memory efficient transfer learning", "video generation"]
    for line in lines:
        assert set(line) == {"query", "results"}
        assert 1 <= len(line["results"]) <= 4
        ids = [r["paper_id"] for r in line["results"]]
        assert len(ids) == len(set(ids))
        for result in line["results"]:
            assert set(result) == {"paper_id", "title", "score", "url"}
    hf_ids = {p["paper"]["id"] for p in json.loads(HF_DAY.read_text())}
    all_results = [r for line in lines for r in line["results"]]
    for result in all_results:  # arXiv papers are keyed by arXiv id and link to arXiv
        if result["paper_id"] in hf_ids:
            assert result["url"] == f"https://arxiv.org/abs/{result['paper_id']}"
        else:
            assert result["paper_id"].startswith("title:")

    # The readable listing shows what is known and no placeholder: the page's papers have no id or date.
    code, out, _ = run(capsys, "search", "memory efficient transfer learning", "--limit", "4")
    assert code == EXIT_OK and "SHERL" in out
    assert "????" not in out and "title:" not in out
    assert any(line.strip().startswith("score ") for line in out.splitlines())  # a page paper's line


def test_search_refuses_empty_query_and_bad_dates(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "search", "   ")
    assert code == EXIT_USAGE and "empty" in err
    with pytest.raises(SystemExit) as excinfo:
        main(["search", "x", "--since", "yesterday"])
    assert excinfo.value.code == 2
    assert "not a date" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--iterations", "8"], "--iterations must be between 1 and 7"),
        (["--k", "0"], "--k must be between 1 and 50"),
    ],
)
def test_ask_refuses_out_of_range_options_before_starting_anything(
    capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    code, out, err = run(capsys, "ask", "why?", *options)
    assert code == EXIT_USAGE and err.strip() == f"error: {message}" and out == ""


def test_missing_file_is_a_reject_not_a_crash(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "ingest", "--no-progress", str(tmp_path / "nope.jsonl"))
    assert code == EXIT_REJECTED
    assert "no such file" in err and "rejected 1" in out


def test_an_invalid_setting_is_one_line_naming_it_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_ITERATIONS", "99")
    code, out, err = run(capsys, "search", "anything")
    assert code == 78 and out == ""
    assert err.strip().splitlines() == [
        "error: invalid settings: RAG_ITERATIONS (from the environment): "
        "Input should be less than or equal to 7 (see .env.example)"
    ]


@contextmanager
def scripted_llm_in_a_thread() -> Iterator[ScriptedLLMServer]:
    """The scripted OpenAI-compatible server on its own event loop, for the CLI's own asyncio.run."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = ScriptedLLMServer()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_ask_json_says_whether_the_papers_could_answer(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(capsys, "ingest", "--no-progress", str(SEED_PAGE))[0] == EXIT_OK
    with scripted_llm_in_a_thread() as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        llm.script(
            ScriptedReply("Answer: SHERL avoids backpropagating gradients through the large backbone.")
        )
        code, out, _ = run(capsys, "ask", "--json", "--iterations", "1", "What is SHERL?")
        assert code == EXIT_OK
        answered = json.loads(out)
        llm.script(ScriptedReply("Answer: Tungsten boils at 5555 degrees Celsius [1]."))
        code, out, _ = run(
            capsys, "ask", "--json", "--iterations", "1", "What is the boiling point of tungsten?"
        )
        assert code == EXIT_OK
        refused = json.loads(out)
    assert answered["cannot_answer"] is False and answered["fallback"] is False
    assert answered["answer"] == "SHERL avoids backpropagating gradients through the large backbone [1]."
    assert [c["title"].split(":")[0] for c in answered["citations"]] == ["SHERL"]
    assert refused["cannot_answer"] is True and refused["citations"] == []
    assert refused["answer"] == "I can't answer that from these papers."
