"""Prometheus metrics in a registry of our own (not the global one: no surprise metrics from libraries).

The other layers call the small `observe_*` / `record_*` functions below; `/metrics` renders
`REGISTRY`. LLM usage is read at scrape time from the `UsageTotals` the LLM client already keeps, so
the client needs no metrics code. Label values are bounded (command names, a fixed set of outcomes,
digest statuses, shard ids) so a metric never grows one series per user or per paper.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from bot import __version__

REGISTRY = CollectorRegistry(auto_describe=True)

# What a command or question ended as. Anything else is counted as "error".
OUTCOMES = frozenset({"ok", "user_error", "rate_limited", "forbidden", "unavailable", "timeout", "error"})
DIGEST_STAGES = ("fetched", "new", "duplicates", "filtered", "posted", "failed", "recovered")

BUILD_INFO = Info("paperbot_build", "Version of the running paperbot.", registry=REGISTRY)
BUILD_INFO.info({"version": __version__})

COMMANDS = Counter(
    "paperbot_commands",
    "Commands and chat questions served, by command and outcome.",
    ["command", "outcome"],
    registry=REGISTRY,
)
COMMAND_SECONDS = Histogram(
    "paperbot_command_duration_seconds",
    "Time from the user's interaction or message to the bot's last reply.",
    ["command"],
    # Searches answer in well under a second; Iter-RetGen on a CPU model takes tens of seconds.
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0, 300.0),
    registry=REGISTRY,
)
RETRIEVAL_SECONDS = Histogram(
    "paperbot_retrieval_duration_seconds",
    "One retrieval: query embedding plus the Qdrant query (hybrid, dense or sparse).",
    ["mode"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
DIGEST_RUNS = Counter(
    "paperbot_digest_runs",
    "Digest runs finished, by final status (posted, partial, empty, failed, ...) and trigger.",
    ["status", "trigger"],
    registry=REGISTRY,
)
DIGEST_PAPERS = Counter(
    "paperbot_digest_papers",
    "Papers through the digest stages: fetched, new, duplicates, filtered, posted, failed, recovered.",
    ["stage"],
    registry=REGISTRY,
)
DIGEST_SECONDS = Histogram(
    "paperbot_digest_run_duration_seconds",
    "Wall time of one channel's digest run (fetch, pick, summarize, post).",
    buckets=(1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0),
    registry=REGISTRY,
)
GATEWAY_CONNECTED = Gauge(
    "paperbot_gateway_connected",
    "1 while the shard's gateway connection is up.",
    ["shard"],
    registry=REGISTRY,
)
GATEWAY_RECONNECTS = Counter(
    "paperbot_gateway_reconnects",
    "Gateway connections re-established after the first one (resumes and fresh identifies).",
    ["shard"],
    registry=REGISTRY,
)


def _outcome(value: str) -> str:
    return value if value in OUTCOMES else "error"


def observe_command(command: str, seconds: float, outcome: str = "ok") -> None:
    """One slash command (qualified name, e.g. "digest subscribe") or chat question ("chat")."""
    COMMANDS.labels(command=command, outcome=_outcome(outcome)).inc()
    COMMAND_SECONDS.labels(command=command).observe(max(0.0, seconds))


def seconds_since(started: dt.datetime) -> float:
    """Seconds from an aware timestamp (e.g. `interaction.created_at`) until now."""
    return max(0.0, (dt.datetime.now(dt.UTC) - started).total_seconds())


def observe_retrieval(seconds: float, mode: str = "hybrid") -> None:
    RETRIEVAL_SECONDS.labels(mode=mode).observe(max(0.0, seconds))


class _HasAsDict(Protocol):
    def as_dict(self) -> dict[str, int]: ...


def observe_digest_run(
    status: str,
    counts: Mapping[str, int] | _HasAsDict,
    *,
    trigger: str = "schedule",
    seconds: float | None = None,
) -> None:
    """A finished run: its status and its `DigestCounts` (or the same numbers as a mapping)."""
    values = counts if isinstance(counts, Mapping) else counts.as_dict()
    DIGEST_RUNS.labels(status=status, trigger=trigger).inc()
    for stage in DIGEST_STAGES:
        amount = int(values.get(stage, 0) or 0)
        if amount > 0:
            DIGEST_PAPERS.labels(stage=stage).inc(amount)
    if seconds is not None:
        DIGEST_SECONDS.observe(max(0.0, seconds))


# --- gateway ----------------------------------------------------------------------------------


class GatewayTracker:
    """Connection state per shard of one client (make one per bot: `bot.discord.instrumentation` does); a
    connect or resume after the shard's first connect is a reconnect."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._up: dict[str, bool] = {}

    @staticmethod
    def _label(shard_id: int | None) -> str:
        return str(shard_id if shard_id is not None else 0)

    def connected(self, shard_id: int | None = None) -> None:
        shard = self._label(shard_id)
        if shard in self._seen:
            GATEWAY_RECONNECTS.labels(shard=shard).inc()
        self._seen.add(shard)
        self._up[shard] = True
        GATEWAY_CONNECTED.labels(shard=shard).set(1)

    def resumed(self, shard_id: int | None = None) -> None:
        shard = self._label(shard_id)
        GATEWAY_RECONNECTS.labels(shard=shard).inc()  # a RESUME only ever follows a lost connection
        self._seen.add(shard)
        self._up[shard] = True
        GATEWAY_CONNECTED.labels(shard=shard).set(1)

    def disconnected(self, shard_id: int | None = None) -> None:
        shard = self._label(shard_id)
        self._up[shard] = False
        GATEWAY_CONNECTED.labels(shard=shard).set(0)

    @property
    def shards_up(self) -> list[str]:
        return sorted(shard for shard, up in self._up.items() if up)


# Unused since each bot gets its own tracker (`instrument_bot`); kept only because
# tests/test_discord_daemon.py still monkeypatches it. Remove both together.
GATEWAY = GatewayTracker()


# --- LLM usage, read at scrape time --------------------------------------------------------------


class UsageLike(Protocol):
    calls: int
    prompt_tokens: int
    completion_tokens: int
    errors: int
    retries: int


class _LLMUsageCollector(Collector):
    def __init__(self) -> None:
        self._sources: list[UsageLike] = []

    def track(self, usage: UsageLike) -> None:
        if all(source is not usage for source in self._sources):
            self._sources.append(usage)

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        return list(self._families())

    def _families(self) -> Iterator[Metric]:
        sources = list(self._sources)
        yield CounterMetricFamily(
            "paperbot_llm_calls",
            "LLM completions that succeeded.",
            value=sum(s.calls for s in sources),
        )
        tokens = CounterMetricFamily(
            "paperbot_llm_tokens", "Tokens sent to and generated by the LLM.", labels=["kind"]
        )
        tokens.add_metric(["prompt"], sum(s.prompt_tokens for s in sources))
        tokens.add_metric(["completion"], sum(s.completion_tokens for s in sources))
        yield tokens
        yield CounterMetricFamily(
            "paperbot_llm_errors",
            "LLM calls that failed after their retries (the caller fell back or reported it).",
            value=sum(s.errors for s in sources),
        )
        yield CounterMetricFamily(
            "paperbot_llm_retries",
            "Extra LLM attempts after a timeout, 429 or 5xx.",
            value=sum(s.retries for s in sources),
        )


_LLM_USAGE = _LLMUsageCollector()
REGISTRY.register(_LLM_USAGE)


def track_llm_usage(usage: UsageLike) -> None:
    """Export an LLM client's running totals (`client.usage`); call once per client."""
    _LLM_USAGE.track(usage)


def render_metrics() -> tuple[bytes, str]:
    """The registry in Prometheus text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
