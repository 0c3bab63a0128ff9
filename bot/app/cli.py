"""Command line: `python -m bot ingest|search|ask|digest|run|doctor|config` (also the `paperbot` script)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import errno
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import ValidationError
from pydantic_settings import SettingsError

from bot.core.config import Settings, load_settings
from bot.core.errors import DependencyUnavailableError, UserInputError
from bot.core.logs import configure_logging
from bot.core.papers import clean_text
from bot.db.engine import DatabaseUnavailableError
from bot.retrieval.search import QueryError, SearchResult

if TYPE_CHECKING:
    from bot.app.services import Services

log = structlog.get_logger(__name__)

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def disk_full_error(exc: BaseException) -> OSError | DatabaseUnavailableError | None:
    """The error in `exc`'s chain of causes that means the disk is full (or a file-size limit was hit)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return current
        if isinstance(current, DatabaseUnavailableError) and current.disk_full:
            return current
        current = current.__cause__ or current.__context__
    return None


def _report_unavailable(exc: Exception, settings: Settings) -> int:
    """One clear line on stderr (and a structured log line) for a store or service that cannot be used."""
    full = disk_full_error(exc)
    if full is not None:
        data_dir = settings.core.data_dir.resolve()
        reason = full.strerror if isinstance(full, OSError) else str(full)
        log.error("cli.disk_full", data_dir=str(data_dir), error=reason, error_type=type(exc).__name__)
        print(
            f"error: the disk holding {data_dir} is full ({reason}); free some space and run again",
            file=sys.stderr,
        )
    else:
        log.error("cli.unavailable", error=str(exc), error_type=type(exc).__name__)
        print(f"error: {exc}", file=sys.stderr)
    return EXIT_UNAVAILABLE


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paperbot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    ingest = sub.add_parser("ingest", help="ingest papers from files, folders or live sources")
    ingest.add_argument(
        "sources",
        nargs="+",
        help="files (HF JSON/JSONL, arXiv Atom XML or listing JSONL, saved page text, generic JSONL), "
        "folders of them, or live sources hf:YYYY-MM-DD and arxiv:CATEGORY; a paper's full text: "
        "FILE.pdf, FILE.html (arxiv.org/html), a LaTeX source folder or e-print FILE.tar.gz",
    )
    ingest.add_argument("--no-progress", action="store_true", help="no progress bar")

    search = sub.add_parser("search", help="hybrid search over the stored papers")
    search.add_argument("query", nargs="?", help="what to look for")
    search.add_argument("--limit", type=int, default=5)
    search.add_argument("--since", type=_date, help="only papers published on or after this date")
    search.add_argument("--until", type=_date, help="only papers published on or before this date")
    search.add_argument("--category", action="append", default=[], help="arXiv category filter (repeatable)")
    search.add_argument("--mode", choices=["hybrid", "dense", "sparse"], default="hybrid")
    search.add_argument("--json", action="store_true", help="one JSON object per query")
    search.add_argument("--queries-file", type=Path, help='JSONL file, one {"q": "..."} per line')

    ask = sub.add_parser("ask", help="answer a question from the stored papers (Iter-RetGen), with sources")
    ask.add_argument("question")
    ask.add_argument(
        "--iterations", type=int, help="retrieval-generation rounds T, 1-7 (default RAG_ITERATIONS)"
    )
    ask.add_argument("--k", type=int, help="chunks retrieved per round (default RAG_TOP_K)")
    ask.add_argument("--json", action="store_true", help="print the answer and its accounting as JSON")

    add_digest_arguments(sub)

    cite = sub.add_parser("cite", help="citations of papers in the index (BibTeX, RIS, CSL-JSON or Markdown)")
    cite.add_argument("ids", nargs="+", metavar="ID", help="arXiv ids (2405.15738) or arxiv.org links")
    cite.add_argument(
        "--format", choices=["bibtex", "ris", "csl-json", "markdown"], default="bibtex", dest="fmt"
    )

    sub.add_parser("run", help="run the Discord bot (needs DISCORD_TOKEN)")

    from bot.ops.doctor import add_arguments as add_doctor_arguments

    doctor = sub.add_parser(
        "doctor",
        help="check configuration, Qdrant, database, LLM, embeddings, Discord token, intents, permissions",
    )
    add_doctor_arguments(doctor)

    config = sub.add_parser(
        "config", help="print the effective settings and where each came from (default, .env, environment)"
    )
    config.add_argument("--json", action="store_true", help="print the settings as JSON")
    return parser


def _report_invalid_settings(exc: ValidationError | SettingsError) -> int:
    """One line naming the variable and where it was set; EX_CONFIG, which keeps systemd from
    restarting a bot that cannot start."""
    from bot.app.daemon import EXIT_CONFIG
    from bot.core.config_report import describe_validation_error

    detail = describe_validation_error(exc, with_source=True) if isinstance(exc, ValidationError) else exc
    print(f"error: invalid settings: {detail} (see .env.example)", file=sys.stderr)
    return EXIT_CONFIG


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "doctor":  # loads the settings itself, to report invalid ones instead of crashing
        from bot.ops.doctor import run_doctor

        return run_doctor(args)
    if args.command == "config":  # the same: an invalid setting is what it must report
        from bot.core.config_report import run_config

        return run_config(args.json)
    try:
        settings = load_settings()
    except (ValidationError, SettingsError) as exc:
        return _report_invalid_settings(exc)
    configure_logging(settings.core, settings.secrets)
    handler = {
        "ingest": cmd_ingest,
        "search": cmd_search,
        "ask": cmd_ask,
        "digest": cmd_digest,
        "cite": cmd_cite,
        "run": cmd_run,
    }[args.command]
    try:
        return asyncio.run(handler(args, settings))
    except UserInputError as exc:  # the one mapping of bot.core.errors' two kinds for the CLI
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DependencyUnavailableError as exc:
        return _report_unavailable(exc, settings)
    except OSError as exc:
        if disk_full_error(exc) is None:
            raise
        return _report_unavailable(exc, settings)
    except KeyboardInterrupt:
        return 130


# --- ingest -------------------------------------------------------------------------------------


def _expand(sources: Sequence[str]) -> list[str]:
    from bot.fulltext.files import is_fulltext_path
    from bot.ingest.fetch import is_live_source

    expanded: list[str] = []
    for spec in sources:
        path = Path(spec)
        if not is_live_source(spec) and path.is_dir() and not is_fulltext_path(path):
            expanded.extend(
                str(p) for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")
            )
        else:
            expanded.append(spec)
    return expanded


async def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from bot.app.services import open_services
    from bot.fulltext.files import is_fulltext_path
    from bot.ingest.fetch import FetchError, fetch_source, is_live_source
    from bot.ingest.sources import ParseResult, Rejected, parse_path

    papers = []
    rejected: list[Rejected] = []
    fulltexts: list[Path] = []
    read = 0
    for spec in _expand(args.sources):
        if not is_live_source(spec) and is_fulltext_path(Path(spec)):
            fulltexts.append(Path(spec))  # after the paper lists, so a full text finds its record
            continue
        try:
            if is_live_source(spec):
                result = await fetch_source(spec, settings.sources)
            else:
                result = parse_path(Path(spec))
        except FileNotFoundError:
            result = ParseResult(rejected=[Rejected(spec, None, "no such file or directory")])
        except (ValueError, FetchError) as exc:
            result = ParseResult(rejected=[Rejected(spec, None, str(exc))])
        read += result.records
        papers.extend(result.papers)
        rejected.extend(result.rejected)
    for item in rejected:
        where = f"{item.source}:{item.line}" if item.line else item.source
        print(f"rejected {where}: {item.reason}", file=sys.stderr)

    async with open_services(settings) as services:
        show = not args.no_progress and sys.stderr.isatty() is not False
        with tqdm(total=len(papers), unit="paper", disable=not show or not papers, file=sys.stderr) as bar:
            report = await services.ingestor.ingest(papers, progress=bar.update)
        report.read = read
        report.rejected = rejected
        failed_fulltexts = await _ingest_fulltexts(services, fulltexts)
        stored = await services.index.count_papers()
    if papers or not fulltexts:
        print(f"{report.summary()} (stored papers: {stored}, {report.seconds:.1f}s)")
    return EXIT_REJECTED if rejected or failed_fulltexts else EXIT_OK


async def _ingest_fulltexts(services: Services, paths: Sequence[Path]) -> int:
    """Each full text is added to its stored paper (or becomes one); a bad file is one line on
    stderr and the others still go in. Returns how many failed."""
    failed = 0
    for path in paths:
        assert services.fulltext is not None
        try:
            result = await services.fulltext.ingest_path(path)
        except FileNotFoundError:
            print(f"rejected {path}: no such file or directory", file=sys.stderr)
            failed += 1
            continue
        except UserInputError as exc:
            print(f"rejected {exc}", file=sys.stderr)
            failed += 1
            continue
        record = result.record
        into = "new paper" if result.new_paper else "added to"
        print(
            f"full text {path}: {into} {result.paper.paper_id} ({result.paper.title[:80]}) — "
            f"{record.source_format}, {len(record.sections)} sections, {record.passages} passages, "
            f"parsed in {record.parse_seconds:.2f}s"
        )
    return failed


# --- search -------------------------------------------------------------------------------------


def _result_json(result: SearchResult) -> dict[str, Any]:
    return {
        "query": result.query,
        "results": [
            {
                "paper_id": h.paper.paper_id,
                "title": h.paper.title,
                "score": round(h.score, 6),
                "url": h.paper.url,
            }
            for h in result.hits
        ],
    }


def _print_human(result: SearchResult) -> None:
    print(f"# {result.query}")
    if not result.hits:
        print("  (no papers found)")
    for rank, hit in enumerate(result.hits, 1):
        paper = hit.paper
        # Only what is known: no placeholder date, no id derived from the title.
        known_id = None if paper.paper_id.startswith("title:") else paper.paper_id
        date = paper.published.isoformat() if paper.published else None
        details = [d for d in (known_id, date, f"score {hit.score:.4f}", paper.url) if d]
        print(f"{rank:>2}. {paper.title}")
        print("    " + " · ".join(details))


def _read_queries(path: Path) -> list[str]:
    queries = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QueryError(f"{path}:{line_no}: not JSON ({exc.msg})") from None
        if not isinstance(item, dict) or not isinstance(item.get("q"), str):
            raise QueryError(f'{path}:{line_no}: expected an object with a string "q"')
        queries.append(item["q"])
    return queries


async def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app.services import open_services

    try:
        if args.queries_file:
            queries = _read_queries(args.queries_file)
        elif args.query is not None:
            queries = [args.query]
        else:
            raise QueryError("give a QUERY or --queries-file")
        if any(not clean_text(q) for q in queries):
            raise QueryError("the search query is empty; type a few words describing the papers you want")
    except OSError as exc:  # an unreadable --queries-file
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    async with open_services(settings) as services:
        for query in queries:
            result = await services.search.search(
                query,
                limit=args.limit,
                since=args.since,
                until=args.until,
                categories=tuple(args.category),
                mode=args.mode,
            )
            if result.truncated:
                print("warning: the query was too long and was truncated", file=sys.stderr)
            if args.json:
                print(json.dumps(_result_json(result), ensure_ascii=False))
            else:
                _print_human(result)
    return EXIT_OK


# --- ask ----------------------------------------------------------------------------------------


async def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app.services import open_services
    from bot.rag.citations import format_sources_list
    from bot.rag.iter_retgen import QuestionError, check_answer_options

    try:
        check_answer_options(args.iterations, args.k)  # before the LLM starts
    except QuestionError as exc:
        print(f"error: --{exc}", file=sys.stderr)
        return EXIT_USAGE
    if not clean_text(args.question):
        print("error: the question is empty; ask something about the papers", file=sys.stderr)
        return EXIT_USAGE
    async with open_services(settings, with_llm=True) as services:
        answer = await services.answers.answer(args.question, iterations=args.iterations, top_k=args.k)
    if args.json:
        print(json.dumps(answer.to_json(), ensure_ascii=False))
        return EXIT_OK
    print(answer.text)
    if answer.citations:
        print("\nSources:")
        print(format_sources_list(answer.citations))
    return EXIT_OK


# --- cite ---------------------------------------------------------------------------------------


async def cmd_cite(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app.services import open_services
    from bot.library.service import cite_papers

    async with open_services(settings) as services:
        text = await cite_papers(services.index, args.ids, args.fmt)
    sys.stdout.write(text)
    return EXIT_OK


# --- digest -------------------------------------------------------------------------------------

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "samples"


def add_digest_arguments(sub: Any) -> None:
    digest = sub.add_parser(
        "digest",
        help="print a day's digest offline, from saved source files (never posts to Discord)",
        description="Pick and summarize a day's papers for the given topics, as a channel's digest "
        "would, and print it. Sources are read from saved files in --from: hf_daily_YYYY-MM-DD.json "
        "(a Hugging Face daily papers API response) and arxiv_CATEGORY.xml (an arXiv Atom API "
        "response). Summaries come from the LLM (OPENAI_BASE_URL, else the embedded one); without "
        "one, each summary is the abstract's first sentences, marked as such. The CLI never posts: "
        "with or without --dry-run it prints the digest, and records nothing as posted. "
        "`digest subscriptions` lists the channels' digest subscriptions instead.",
    )
    actions = digest.add_subparsers(dest="digest_command", metavar="{subscriptions}")
    listing = actions.add_parser(
        "subscriptions",
        help="list the digest subscriptions in the state database, with their next run",
        description="One line per subscribed channel: guild, channel, schedule, paused or active, "
        "topics, sources and the next run (UTC). Reads the state database only (DATABASE_URL).",
    )
    listing.add_argument(
        "--json", action="store_true", help="a JSON list (guild and channel ids as strings, like Discord's)"
    )
    digest.add_argument(
        "--date", type=_date, default=None, help="digest date YYYY-MM-DD (default: today, UTC)"
    )
    digest.add_argument("--topics", default="", help='comma-separated topics, e.g. "reasoning, agents"')
    digest.add_argument("--keywords", default="", help="comma-separated keywords that pick a paper")
    digest.add_argument("--exclude", default="", help="comma-separated negative keywords that drop a paper")
    digest.add_argument("--arxiv", action="append", default=[], metavar="CATEGORY",
                        help="also read arxiv_CATEGORY.xml (repeatable)")  # fmt: skip
    digest.add_argument("--no-hf", action="store_true", help="skip the Hugging Face daily list")
    digest.add_argument("--min-upvotes", type=int, default=0)
    digest.add_argument("--max-papers", type=int, default=5, help="1-50 (default 5)")
    digest.add_argument(
        "--from",
        dest="source_dir",
        type=Path,
        default=SAMPLES_DIR,
        help=f"folder of saved source files (default: {SAMPLES_DIR})",
    )
    digest.add_argument(
        "--dry-run",
        action="store_true",
        help="print only; the CLI has no Discord, so this is also what happens without it",
    )


def _digest_subscription(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from bot.digest.records import SubscriptionSettings

    try:
        return SubscriptionSettings(
            guild_id=0,
            channel_id=0,
            hf_daily=not args.no_hf,
            arxiv_categories=args.arxiv,
            topics=args.topics,
            keywords=args.keywords,
            negative_keywords=args.exclude,
            min_upvotes=args.min_upvotes,
            max_papers=args.max_papers,
        )
    except ValidationError as exc:
        from bot.digest.subscriptions import validation_text

        raise QueryError(validation_text(exc, fields=False)) from None


def _print_digest(preview: Any) -> None:
    header = preview.header
    if header.empty_message is not None or not preview.posts:
        print(f"# {header.title}")
        print(header.empty_message or "No papers to post.")
        return
    print(f"# {header.title}")
    print(f"{header.tally} Sources: {', '.join(header.sources)}")
    for post in preview.posts:
        paper = post.paper
        print(f"\n{post.rank}. {paper.title}")
        details = [paper.url or paper.paper_id]
        if paper.authors:
            more = f" +{len(paper.authors) - 3}" if len(paper.authors) > 3 else ""
            details.append(", ".join(paper.authors[:3]) + more)
        if paper.upvotes is not None:
            details.append(f"{paper.upvotes} upvotes")
        print("   " + " · ".join(details))
        if post.why:
            print(f"   Why: {post.why}")
        summary_lines = post.summary.splitlines() or [""]
        note = f" ({post.summary_note})" if post.summary_note else ""
        print(f"   Summary{note}: {summary_lines[0]}")
        for line in summary_lines[1:]:
            print(f"   {line}")


async def cmd_digest(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app.services import open_services
    from bot.digest.sources import directory_fetcher

    if args.digest_command == "subscriptions":
        return await cmd_digest_subscriptions(args, settings)
    subscription = _digest_subscription(args)
    if not args.source_dir.is_dir():
        raise QueryError(f"--from {args.source_dir}: no such folder")
    digest_date = args.date or dt.datetime.now(dt.UTC).date()
    fetch = directory_fetcher(args.source_dir)
    async with open_services(settings, with_llm=True, with_database=True, fetch=fetch) as services:
        assert services.state is not None
        preview = await services.state.digests.preview(subscription, digest_date)
    for error in preview.errors:
        print(f"warning: {error}", file=sys.stderr)
    _print_digest(preview)
    if not preview.posts and preview.errors:
        return EXIT_UNAVAILABLE
    return EXIT_OK


def _subscription_json(item: Any) -> dict[str, Any]:
    sub = item.subscription
    return {
        "id": sub.id,
        "guild_id": str(sub.guild_id),
        "channel_id": str(sub.channel_id),
        "schedule": sub.schedule_text(),
        "paused": sub.paused,
        "topics": sub.topics,
        "sources": sub.source_names,
        "next_run": item.next_run.astimezone(dt.UTC).isoformat() if item.next_run else None,
    }


def _subscription_line(item: Any) -> str:
    sub = item.subscription
    next_run = item.next_run.astimezone(dt.UTC).isoformat() if item.next_run else "none"
    return (
        f"guild {sub.guild_id} · channel {sub.channel_id} · {sub.schedule_text()} · "
        f"{'paused' if sub.paused else 'active'} · topics: {', '.join(sub.topics) or '—'} · "
        f"sources: {', '.join(sub.source_names)} · next run: {next_run}"
    )


async def cmd_digest_subscriptions(args: argparse.Namespace, settings: Settings) -> int:
    """`digest subscriptions`: the state database only; no index, model or scheduler is started."""
    from bot.db import Repository, open_database
    from bot.digest.subscriptions import scheduled_subscriptions

    async with open_database(settings) as database:
        listed = await scheduled_subscriptions(Repository(database))
    if args.json:
        print(json.dumps([_subscription_json(item) for item in listed], ensure_ascii=False))
        return EXIT_OK
    if not listed:
        print("no digest subscriptions yet (an admin sets one up with /digest subscribe in a channel)")
    for item in listed:
        print(_subscription_line(item))
    return EXIT_OK


# --- run ----------------------------------------------------------------------------------------


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app.daemon import EXIT_CONFIG, ConfigurationError, run_bot

    try:
        await run_bot(settings)
    except ConfigurationError as exc:
        log.error("daemon.configuration_error", error=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK
