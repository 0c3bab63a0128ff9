"""`python -m bot doctor`: check everything the bot needs, print a table, and say how to fix what fails.

Checks, in order: configuration, data directory, tokenizer, Qdrant, database (and its subscribed
channels), LLM (one tiny completion), embedding model, Discord token (`GET /users/@me`), the
message-content intent (`GET /applications/@me` flags), sharding (`GET /gateway/bot`) and, for each
subscribed channel (or `--channel ID`), the bot's permissions computed from the channel's overwrites,
the guild's roles and the bot's member roles. Discord is reached over plain REST (httpx), never the
gateway, so `doctor` can run next to a live bot. The exit status is 1 if any check failed. No secret
is ever printed: every line goes through the same scrubber as the logs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TextIO

from pydantic import ValidationError

from bot.core.config import Settings
from bot.core.config_report import describe_validation_error
from bot.core.logs import SecretScrubber
from bot.discord.permissions import REQUIRED, channel_permissions
from bot.discord.rest_client import DiscordAPIError, DiscordREST

Status = Literal["ok", "warn", "fail", "skip"]
GROUPS = ("data-dir", "tokenizer", "qdrant", "database", "llm", "embedding", "discord", "channels")

# Application flags (GET /applications/@me): the message-content intent, verified or limited (<100 guilds).
GATEWAY_MESSAGE_CONTENT = 1 << 18
GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19
GUILDS_PER_SHARD_LIMIT = 2500  # above this many guilds per shard the gateway closes with 4011
THREAD_TYPES = {10, 11, 12}

PORTAL = "https://discord.com/developers/applications"


@dataclass
class Finding:
    check: str
    status: Status
    detail: str
    fix: str = ""


@dataclass
class _Target:
    channel_id: int
    guild_id: int | None
    source: str  # "subscription" or "--channel"


@dataclass
class _DiscordContext:
    api: DiscordREST
    bot_id: int
    guilds: dict[int, dict[str, Any]] = field(default_factory=dict)


class Doctor:
    def __init__(self, settings: Settings, *, channels: Sequence[int] = (), skip: Sequence[str] = ()) -> None:
        self.settings = settings
        self.skip = set(skip)
        self.findings: list[Finding] = []
        self._targets: dict[int, _Target] = {c: _Target(c, None, "--channel") for c in channels}
        self._subscriptions_read = False

    def add(self, check: str, status: Status, detail: str, fix: str = "") -> Finding:
        finding = Finding(check, status, detail, fix)
        self.findings.append(finding)
        return finding

    @property
    def failed(self) -> bool:
        return any(f.status == "fail" for f in self.findings)

    async def run(self) -> list[Finding]:
        self.check_configuration()
        await self._step("data-dir", "data directory", self.check_data_dir)
        await self._step("tokenizer", "tokenizer", self.check_tokenizer)
        await self._step("qdrant", "qdrant", self.check_qdrant)
        await self._step("database", "database", self.check_database)
        await self._step("llm", "llm", self.check_llm)
        await self._step("embedding", "embedding model", self.check_embedding)
        await self._step("discord", "discord", self.check_discord)
        return self.findings

    async def _step(self, group: str, label: str, check: Callable[[], Awaitable[None]]) -> None:
        if group in self.skip:
            self.add(label, "skip", f"skipped (--skip {group})")
            return
        try:
            await check()
        except Exception as exc:
            self.add(
                label, "fail", f"{type(exc).__name__}: {exc}", "see the error above; rerun with --verbose"
            )

    # -- configuration -------------------------------------------------------------------------

    def check_configuration(self) -> None:
        s = self.settings
        qdrant = s.qdrant.url or f"embedded Edge in {s.core.qdrant_path}"
        llm = s.llm.base_url or f"embedded llama.cpp ({s.llm.local_model})"
        self.add(
            "configuration",
            "ok",
            f"settings loaded: env={s.core.env}, data dir {s.core.data_dir}, Qdrant {qdrant}, LLM {llm}",
        )
        discord = s.discord
        if discord.shard_ids and not discord.shard_count:
            self.add(
                "sharding settings",
                "fail",
                f"DISCORD_SHARD_IDS={discord.shard_ids} without DISCORD_SHARD_COUNT: the ids are ignored "
                "and this process would run every guild",
                "set DISCORD_SHARD_COUNT to the total number of shards across all processes",
            )
        elif discord.shard_ids and discord.shard_count:
            wrong = [i for i in discord.shard_ids if not 0 <= i < discord.shard_count]
            if wrong:
                self.add(
                    "sharding settings",
                    "fail",
                    f"shard ids {wrong} are outside 0..{discord.shard_count - 1}",
                    "shard ids run from 0 to DISCORD_SHARD_COUNT-1",
                )

    async def check_data_dir(self) -> None:
        path = self.settings.core.data_dir.resolve()
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / f".doctor-{uuid.uuid4().hex[:8]}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            self.add(
                "data directory",
                "fail",
                f"{path} is not writable: {exc.strerror or exc}",
                f"create it and give the bot's user write access (e.g. `install -d -o paperbot {path}`), "
                "or set PAPERBOT_DATA_DIR",
            )
            return
        self.add("data directory", "ok", f"{path} is writable")

    async def check_tokenizer(self) -> None:
        from bot.retrieval.tokens import count_tokens, ensure_tiktoken_cache

        encoding = self.settings.tokenizer.encoding
        ensure_tiktoken_cache(encoding, self.settings.core.cache_dir / "tiktoken")
        tokens = count_tokens("paperbot doctor", encoding)
        self.add("tokenizer", "ok", f"tiktoken {encoding} loaded offline ({tokens} tokens in a test string)")

    # -- storage -------------------------------------------------------------------------------

    async def check_qdrant(self) -> None:
        from bot.retrieval.index import open_index

        settings = self.settings
        try:
            index = open_index(settings)
        except Exception as exc:
            self.add("qdrant", "fail", f"cannot open the index: {exc}", _qdrant_fix(settings))
            return
        try:
            if index.backend == "server":
                await index.ping()
                try:
                    papers = await index.count_papers()
                except Exception:
                    self.add(
                        "qdrant",
                        "warn",
                        f"{settings.qdrant.url} answers, but collection {settings.qdrant.collection!r} "
                        "does not exist yet",
                        "it is created (with QDRANT_SHARD_NUMBER/QDRANT_REPLICATION_FACTOR) at the first "
                        "`python -m bot ingest` or `run`",
                    )
                    return
                where = settings.qdrant.url
            else:
                await index.ensure_collection(settings.embedding.dimensions)
                await index.ping()
                papers = await index.count_papers()
                where = f"embedded Edge at {settings.core.qdrant_path}"
        except Exception as exc:
            self.add("qdrant", "fail", str(exc) or type(exc).__name__, _qdrant_fix(settings))
            return
        finally:
            await index.close()
        self.add("qdrant", "ok", f"{where}: {papers} papers stored")

    async def check_database(self) -> None:
        try:
            from bot.db import Database, Repository
            from bot.db.schema import SCHEMA_VERSION, schema_version
        except ImportError:
            self.add("database", "skip", "this build has no state database (bot.db)")
            return
        try:
            database = Database.from_settings(self.settings)
        except ValueError as exc:
            self.add(
                "database",
                "fail",
                str(exc),
                "DATABASE_URL must look like postgresql://user:password@host:5432/dbname, "
                "or be unset (SQLite)",
            )
            return
        try:
            try:
                version = await schema_version(database.engine)
            except Exception as exc:
                self.add(
                    "database",
                    "fail",
                    f"{database.redacted_url}: {type(exc).__name__}: {exc}",
                    "check DATABASE_URL (host, port, user, password, database name) and that the server "
                    "accepts connections from here (`pg_isready -h HOST -p PORT`)",
                )
                return
            where = database.redacted_url
            if version is None:
                self.add("database", "ok", f"{where}: reachable; tables are created at the first start")
                return
            if version > SCHEMA_VERSION:
                self.add(
                    "database",
                    "fail",
                    f"{where}: schema version {version} is newer than this paperbot ({SCHEMA_VERSION})",
                    "upgrade paperbot, or point DATABASE_URL at another database",
                )
                return
            subscriptions = await Repository(database).list_subscriptions()
            for sub in subscriptions:
                self._targets.setdefault(
                    sub.channel_id, _Target(sub.channel_id, sub.guild_id, "subscription")
                )
            self._subscriptions_read = True
            paused = sum(1 for sub in subscriptions if sub.paused)
            upgrade = " (upgraded at the next start)" if version < SCHEMA_VERSION else ""
            self.add(
                "database",
                "ok",
                f"{where}: schema v{version}{upgrade}, {len(subscriptions)} subscribed channels"
                + (f" ({paused} paused)" if paused else ""),
            )
        finally:
            await database.close()

    # -- models --------------------------------------------------------------------------------

    async def check_llm(self) -> None:
        from bot.llm import LLMError, LLMRequestError, LocalLLMUnavailable, llm_session
        from bot.llm.client import redact_url

        llm = self.settings.llm
        fallback = " Until then answers are extractive (cited sentences, no LLM)."
        try:
            async with llm_session(llm, self.settings.core.models_dir) as client:
                completion = await client.generate(system="", user="Reply with the word OK.", max_tokens=4)
                where = "embedded server" if llm.embedded else redact_url(client.base_url)
        except LocalLLMUnavailable as exc:
            self.add(
                "llm",
                "fail",
                _first_line(str(exc)),
                "run `make llm` (builds llama-cpp-python, installs the default model's parts) or set "
                "OPENAI_BASE_URL to an OpenAI-compatible server." + fallback,
            )
            return
        except LLMRequestError as exc:
            self.add(
                "llm",
                "fail",
                str(exc),
                "the server rejected the request: check OPENAI_API_KEY, LLM_MODEL and LLM_API_MODE."
                + fallback,
            )
            return
        except LLMError as exc:
            self.add(
                "llm",
                "fail",
                str(exc),
                f"check that {llm.base_url or 'the LLM server'} is running and reachable from here."
                + fallback,
            )
            return
        self.add(
            "llm",
            "ok",
            f"{llm.model} at {where} answered in {completion.seconds:.1f}s "
            f"({completion.completion_tokens} tokens, {client.api_mode} API)",
        )

    async def check_embedding(self) -> None:
        from bot.retrieval.embedding import LocalEmbedder, open_embedder

        settings = self.settings.embedding
        embedder = await asyncio.to_thread(open_embedder, settings, self.settings.core.cache_dir / "onnx")
        try:
            vector = await embedder.embed_query("test")
        finally:
            await embedder.aclose()
        if len(vector) != settings.dimensions:
            self.add(
                "embedding model",
                "fail",
                f"{embedder.name} returns {len(vector)} dimensions, "
                f"EMBEDDING_DIMENSIONS is {settings.dimensions}",
                "set EMBEDDING_DIMENSIONS to the model's size; a different size needs a new collection",
            )
            return
        detail = f"{embedder.name}: {len(vector)}-d vector for a test query"
        if isinstance(embedder, LocalEmbedder) and settings.query_runtime == "onnx":
            if embedder.query_encoder is None:
                self.add(
                    "embedding model",
                    "warn",
                    f"{detail}; queries fall back to torch (slower): the ONNX query model did not load",
                    "see the embedding.onnx_unavailable_using_torch log line; "
                    "or set EMBEDDING_QUERY_RUNTIME=torch",
                )
                return
            detail += " (queries through ONNX Runtime)"
        self.add("embedding model", "ok", detail)

    # -- Discord -------------------------------------------------------------------------------

    async def check_discord(self) -> None:
        discord = self.settings.discord
        token = discord.token.get_secret_value().strip() if discord.token else ""
        if not token:
            self.add(
                "discord token",
                "fail",
                "DISCORD_TOKEN is not set",
                f"{PORTAL} → your application → Bot → Reset Token; put it in .env as DISCORD_TOKEN=…",
            )
            self._skip_channels("no token")
            return
        async with DiscordREST(discord.api_base, token) as api:
            me = await self._check_token(api)
            if me is None:
                self._skip_channels("the token does not work")
                return
            context = _DiscordContext(api=api, bot_id=int(me["id"]))
            guild_count = await self._check_intent(api)
            await self._check_sharding(api, guild_count)
            if "channels" in self.skip:
                self.add("channel permissions", "skip", "skipped (--skip channels)")
            else:
                await self._check_channels(context)

    def _skip_channels(self, why: str) -> None:
        if self._targets:
            self.add("channel permissions", "skip", f"not checked: {why}")

    async def _check_token(self, api: DiscordREST) -> dict[str, Any] | None:
        base = self.settings.discord.api_base
        try:
            me = await api.get("/users/@me")
        except DiscordAPIError as exc:
            if exc.status == 401:
                self.add(
                    "discord token",
                    "fail",
                    "Discord rejected DISCORD_TOKEN (401 Unauthorized)",
                    f"the token was reset or mistyped: {PORTAL} → your application → Bot → Reset Token, "
                    "then update DISCORD_TOKEN",
                )
            else:
                self.add(
                    "discord token",
                    "fail",
                    f"GET /users/@me answered {exc}",
                    "retry later; see status.discord.com",
                )
            return None
        except Exception as exc:  # httpx transport errors: DNS, TLS, refused, timeout
            self.add(
                "discord token",
                "fail",
                f"cannot reach {base}: {type(exc).__name__}: {exc}",
                "check this host's network, DNS and proxy, and DISCORD_API_BASE",
            )
            return None
        if not me.get("bot"):
            self.add(
                "discord token",
                "fail",
                f"the token belongs to the user account {me.get('username')!r}, not to a bot",
                f"use the bot's token: {PORTAL} → your application → Bot",
            )
            return None
        self.add("discord token", "ok", f"valid: logged in as {me.get('username')} (id {me.get('id')})")
        return dict(me)

    async def _check_intent(self, api: DiscordREST) -> int | None:
        app = await api.get("/applications/@me")
        flags = int(app.get("flags") or 0)
        guilds = app.get("approximate_guild_count")
        enabled = bool(flags & (GATEWAY_MESSAGE_CONTENT | GATEWAY_MESSAGE_CONTENT_LIMITED))
        wanted = self.settings.discord.message_content_intent
        name = "message-content intent"
        if not wanted:
            state = "enabled in the portal" if enabled else "off in the portal"
            self.add(
                name,
                "ok",
                f"not requested (DISCORD_MESSAGE_CONTENT_INTENT=false; {state}): slash commands and "
                "mentions work, plain follow-ups in threads are not seen",
            )
        elif not enabled:
            self.add(
                name,
                "fail",
                "requested, but not enabled for this application: the gateway will refuse the "
                "connection (close code 4014)",
                f"{PORTAL} → your application → Bot → Privileged Gateway Intents → Message Content Intent; "
                "or set DISCORD_MESSAGE_CONTENT_INTENT=false",
            )
        elif flags & GATEWAY_MESSAGE_CONTENT:
            self.add(name, "ok", "enabled (verified application)")
        elif isinstance(guilds, int) and guilds >= 75:
            self.add(
                name,
                "warn",
                f"enabled for unverified bots only, and the bot is in {guilds} servers: the intent stops "
                "at 100 servers",
                "verify the application and apply for the Message Content intent in the Developer Portal",
            )
        else:
            self.add(name, "ok", "enabled")
        return guilds if isinstance(guilds, int) else None

    async def _check_sharding(self, api: DiscordREST, guild_count: int | None) -> None:
        gateway = await api.get("/gateway/bot")
        recommended = int(gateway.get("shards") or 1)
        limit = gateway.get("session_start_limit") or {}
        discord = self.settings.discord
        configured = discord.shard_count or 1
        mine = f"; this process runs shards {discord.shard_ids}" if discord.shard_ids else ""
        detail = (
            f"{configured} shard(s) configured, Discord recommends {recommended}"
            + (f" for {guild_count} servers" if guild_count is not None else "")
            + mine
        )
        if guild_count is not None and guild_count > GUILDS_PER_SHARD_LIMIT * configured:
            self.add(
                "sharding",
                "fail",
                detail
                + f": more than {GUILDS_PER_SHARD_LIMIT} servers per shard is refused (close code 4011)",
                f"set DISCORD_SHARD_COUNT to at least {recommended} and spread DISCORD_SHARD_IDS over "
                "processes (docs/scaling.md)",
            )
        elif configured < recommended:
            self.add(
                "sharding",
                "warn",
                detail,
                f"raise DISCORD_SHARD_COUNT to {recommended} at the next restart (docs/scaling.md)",
            )
        else:
            self.add("sharding", "ok", detail)
        total, remaining = limit.get("total"), limit.get("remaining")
        if isinstance(total, int) and isinstance(remaining, int) and remaining < max(1, total // 10):
            hours = float(limit.get("reset_after") or 0) / 3_600_000
            self.add(
                "gateway session starts",
                "warn",
                f"{remaining} of {total} daily identifies left (resets in {hours:.1f} h)",
                "stop restart loops (check the logs); each restart spends one identify per shard",
            )

    async def _check_channels(self, context: _DiscordContext) -> None:
        if not self._targets:
            source = "none subscribed in the database" if self._subscriptions_read else "no database"
            self.add(
                "channel permissions",
                "skip",
                f"no channels to check ({source}); pass --channel ID to check one",
            )
            return
        for target in self._targets.values():
            try:
                await self._check_channel(context, target)
            except DiscordAPIError as exc:
                self.add(f"channel {target.channel_id}", "fail", f"Discord answered {exc}", "retry later")

    async def _check_channel(self, context: _DiscordContext, target: _Target) -> None:
        api = context.api
        label = f"channel {target.channel_id}"
        try:
            channel = await api.get(f"/channels/{target.channel_id}")
        except DiscordAPIError as exc:
            if exc.status == 404:
                self.add(
                    label,
                    "fail",
                    "unknown channel (deleted?)"
                    + (" — still subscribed" if target.source == "subscription" else ""),
                    "remove the subscription (/digest unsubscribe) or check the id",
                )
            elif exc.status == 403:
                self.add(
                    label,
                    "fail",
                    "the bot cannot see this channel (Missing Access: no View Channel, or not in the server)",
                    "Edit Channel → Permissions → add the bot's role → allow View Channel, Send Messages, "
                    "Embed Links, Read Message History, Create Public Threads, Send Messages in Threads",
                )
            else:
                raise
            return
        guild_id = int(channel.get("guild_id") or target.guild_id or 0)
        name = channel.get("name") or str(target.channel_id)
        label = f"#{name} ({target.channel_id})"
        if not guild_id:
            self.add(label, "skip", "not a server channel (a DM?): permissions do not apply")
            return
        overwrites = channel.get("permission_overwrites") or []
        if int(channel.get("type", 0)) in THREAD_TYPES and channel.get("parent_id"):
            parent = await api.get(f"/channels/{channel['parent_id']}")  # threads use the parent's overwrites
            overwrites = parent.get("permission_overwrites") or []
        guild = await self._guild(context, guild_id)
        if guild is None:
            self.add(
                label,
                "fail",
                f"the bot is not a member of server {guild_id}",
                "invite it again with the OAuth2 URL (scopes: bot, applications.commands)",
            )
            return
        member_roles = [int(r) for r in guild["member"].get("roles", [])]
        permissions = channel_permissions(
            guild_id=guild_id,
            owner_id=guild["owner_id"],
            member_id=context.bot_id,
            member_roles=member_roles,
            roles=guild["roles"],
            overwrites=overwrites,
        )
        missing = permissions.missing()
        if not missing:
            self.add(label, "ok", "the bot can " + ", ".join(n.lower() for n in REQUIRED.values()))
            return
        by_overwrite = permissions.denied_by_overwrite()
        role = _bot_role_name(guild["roles"], member_roles, context.bot_id)
        if by_overwrite:
            fix = (
                f"#{name} → Edit Channel → Permissions → {role} (or the bot's own entry): allow "
                f"{', '.join(by_overwrite)} — a channel overwrite denies them"
            )
        else:
            fix = f"Server Settings → Roles → {role}: grant {', '.join(missing)} (or allow them on #{name})"
        self.add(label, "fail", "missing " + ", ".join(missing), fix)

    async def _guild(self, context: _DiscordContext, guild_id: int) -> dict[str, Any] | None:
        if guild_id in context.guilds:
            return context.guilds[guild_id]
        api = context.api
        try:
            member = await api.get(f"/guilds/{guild_id}/members/{context.bot_id}")
        except DiscordAPIError as exc:
            if exc.status in (403, 404):
                return None
            raise
        guild = await api.get(f"/guilds/{guild_id}")
        roles = await api.get(f"/guilds/{guild_id}/roles")
        owner = guild.get("owner_id")
        info = {"member": member, "roles": roles, "owner_id": int(owner) if owner else None}
        context.guilds[guild_id] = info
        return info


def _bot_role_name(roles: Sequence[dict[str, Any]], member_roles: Sequence[int], bot_id: int) -> str:
    for role in roles:
        tags = role.get("tags") or {}
        if str(tags.get("bot_id")) == str(bot_id):
            return f"the {role.get('name')!r} role"
    mine = [r for r in roles if int(r["id"]) in member_roles]
    if mine:
        top = max(mine, key=lambda r: int(r.get("position") or 0))
        return f"the {top.get('name')!r} role"
    return "the bot's role"


def _qdrant_fix(settings: Settings) -> str:
    if settings.qdrant.url:
        return (
            f"start Qdrant or fix QDRANT_URL ({settings.qdrant.url}) / QDRANT_API_KEY; with compose: "
            "`docker compose -f deploy/docker-compose.yml up -d qdrant`"
        )
    return (
        f"check that {settings.core.qdrant_path} is writable and not held by a running bot "
        "(the embedded store allows one process; use a Qdrant server for more)"
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


# --- output -------------------------------------------------------------------------------------

_MARK = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def render_table(findings: Sequence[Finding], out: TextIO) -> None:
    counts = {status: sum(1 for f in findings if f.status == status) for status in _MARK}
    out.write(
        f"paperbot doctor: {len(findings)} checks — {counts['ok']} ok, {counts['warn']} warnings, "
        f"{counts['fail']} failed, {counts['skip']} skipped\n\n"
    )
    width = max([len("CHECK"), *(len(f.check) for f in findings)])
    out.write(f"  {'STATUS':<6}  {'CHECK':<{width}}  DETAIL\n")
    for f in findings:
        out.write(f"  {_MARK[f.status]:<6}  {f.check:<{width}}  {f.detail}\n")
    todo = [f for f in findings if f.fix and f.status in ("fail", "warn")]
    if todo:
        out.write("\nHow to fix:\n")
        for f in todo:
            out.write(f"  {_MARK[f.status]} {f.check}: {f.fix}\n")


def scrub_findings(findings: Sequence[Finding], secrets: Sequence[str]) -> list[Finding]:
    scrubber = SecretScrubber(secrets)
    return [
        Finding(f.check, f.status, scrubber.scrub_text(f.detail), scrubber.scrub_text(f.fix))
        for f in findings
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--channel",
        type=int,
        action="append",
        default=[],
        metavar="ID",
        help="also check the bot's permissions in this channel (repeatable)",
    )
    parser.add_argument(
        "--skip", action="append", default=[], choices=GROUPS, help="skip a group of checks (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.add_argument("--verbose", action="store_true", help="show the components' log lines too")


def run_doctor(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Entry point for `python -m bot doctor`: 0 when nothing failed, 1 otherwise."""
    from bot.core.config import load_settings
    from bot.core.logs import configure_logging

    out = out or sys.stdout
    try:
        settings = load_settings()
    except ValidationError as exc:
        findings = [
            Finding(
                "configuration",
                "fail",
                describe_validation_error(exc),
                "fix these values in .env or the environment (each one is documented in .env.example)",
            )
        ]
        _emit(findings, args.json, out)
        return 1
    core = settings.core if args.verbose else settings.core.model_copy(update={"log_level": "WARNING"})
    configure_logging(core, settings.secrets)
    doctor = Doctor(settings, channels=args.channel, skip=args.skip)
    findings = scrub_findings(asyncio.run(doctor.run()), settings.secrets)
    _emit(findings, args.json, out)
    return 1 if any(f.status == "fail" for f in findings) else 0


def _emit(findings: Sequence[Finding], as_json: bool, out: TextIO) -> None:
    if as_json:
        ok = not any(f.status == "fail" for f in findings)
        out.write(json.dumps({"ok": ok, "checks": [asdict(f) for f in findings]}, ensure_ascii=False) + "\n")
    else:
        render_table(findings, out)
    out.flush()
