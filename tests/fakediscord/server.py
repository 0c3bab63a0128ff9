"""``FakeDiscord``: Discord's REST API and gateway on 127.0.0.1, for the real discord.py.

Every REST request is recorded and checked against Discord's OpenAPI description and the limits
the description leaves out; problems become ``Violation``s that ``assert_valid()`` (and the pytest
fixture, at teardown) turns into a failure listing them all.  Invalid requests are also answered
the way Discord answers them (400 Invalid Form Body, 404 Unknown interaction...), so the bot's
error paths run as they would in production.
"""

# Test helpers wait on the bot, so their timeouts are part of the API.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import re
import secrets
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from aiohttp import BodyPartReader, web

from . import polls
from .checks import (
    MentionAllowance,
    Problem,
    autocomplete_problems,
    message_problems,
    ping_problems,
)
from .gateway import Gateway
from .interactions import InteractionBuilder, InteractionHandle, InteractionType, iter_components
from .records import RecordedRequest, UploadedFile, Violation, ViolationKind
from .rest import DiscordError, RestApi, find_component, json_response
from .spec import API_PREFIX, DiscordSpec, Operation
from .state import ChannelType, FakeDiscordState, Intent, Interaction, MessageFlag

T = TypeVar("T")

# "inline": every request is checked against the OpenAPI description as it arrives (and answered
# 400 if it breaks it). "deferred": checked when the fake stops, so the validator's CPU time
# (openapi-core, ~10 ms a request) does not count against the bot's 3 s interaction deadline in load
# tests; a bad request still fails the test at teardown. "off": not checked (memory soaks).
# Discord's limits, interaction rules and ping checks always run inline.
SpecValidation = Literal["inline", "deferred", "off"]

_RECORD = web.RequestKey("fake_record", RecordedRequest)

# Routes the interaction token authenticates; everything else needs "Authorization: Bot <token>".
_TOKEN_ROUTES = re.compile(r"^/(interactions|webhooks)/")


@dataclass
class Fault:
    """An injected failure: the next ``times`` matching requests get ``status``."""

    route: str  # "POST /channels/{channel_id}/messages" (spec template) or a concrete path
    status: int
    times: int
    retry_after: float = 0.0
    is_global: bool = False
    hits: int = 0

    def matches(self, rec: RecordedRequest) -> bool:
        return self.hits < self.times and self.route in (rec.key, f"{rec.method} {rec.path}")

    def response(self) -> web.Response:
        self.hits += 1
        if self.status != 429:
            body = {"message": f"{self.status}: {_REASONS.get(self.status, 'Server Error')}", "code": 0}
            return json_response(body, status=self.status)
        headers = {
            "Via": "1.1 google",  # discord.py treats a 429 without Via as a Cloudflare ban
            "Retry-After": str(max(1, math.ceil(self.retry_after))),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + self.retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{self.retry_after:.3f}",
            "X-RateLimit-Bucket": secrets.token_hex(16),
            "X-RateLimit-Scope": "global" if self.is_global else "user",
        }
        if self.is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {
            "message": "You are being rate limited.",
            "retry_after": self.retry_after,
            "global": self.is_global,
        }
        if self.is_global:
            body["code"] = 0
        return json_response(body, status=429, headers=headers)


_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class FakeDiscord:
    """Discord for one test: ``async with FakeDiscord() as fake:`` or the ``fake_discord`` fixture."""

    def __init__(
        self,
        state: FakeDiscordState | None = None,
        *,
        spec: DiscordSpec | None = None,
        interaction_deadline: float = 3.0,
        token_lifetime: float = 15 * 60,
        heartbeat_interval_ms: int = 41_250,
        reject_invalid: bool = True,
        validate_responses: bool = True,
        spec_validation: SpecValidation = "inline",
    ) -> None:
        self.state = state or FakeDiscordState()
        self.spec = spec or DiscordSpec.shared()
        self.interaction_deadline = interaction_deadline
        self.token_lifetime = token_lifetime
        self.reject_invalid = reject_invalid
        self.validate_responses = validate_responses
        self.spec_validation: SpecValidation = spec_validation
        self._unvalidated: list[tuple[RecordedRequest, bool]] = []  # (request, its response too)
        self.gateway = Gateway(self, heartbeat_interval_ms=heartbeat_interval_ms)
        self.rest = RestApi(self)
        self.interactions = InteractionBuilder(self.state)
        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self.faults: list[Fault] = []
        self.allowance = MentionAllowance()
        self._clock_offset = 0.0
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> FakeDiscord:
        self._changed = asyncio.Event()
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        for method, template, handler in self.rest.routes():
            app.router.add_route(method, API_PREFIX + template, self._bind(handler))
        app.router.add_get(Gateway.PATH, self.gateway.handle)
        app.router.add_get(Gateway.RESUME_PATH, self.gateway.handle)
        app.router.add_get("/cdn/{kind}/{path:.*}", self._serve_file)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        self.state.cdn_base = f"{self.url}/cdn"
        return self

    async def stop(self) -> None:
        if self._runner is None:
            return
        await self.gateway.close_all()
        await self._runner.cleanup()
        self._runner = None
        self.validate_deferred()

    def validate_deferred(self) -> None:
        """Check against the spec what ``spec_validation="deferred"`` left for later (``stop`` does)."""
        pending, self._unvalidated = self._unvalidated, []
        for rec, response_too in pending:
            for line in self._spec_request_problems(rec):
                self.violation(ViolationKind.SPEC, line, rec)
            if response_too:
                self._validate_response(rec)

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """Value for ``discord.http.Route.BASE`` (or a bot's own setting for the API base URL)."""
        return f"{self.url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """Value for ``DiscordWebSocket.DEFAULT_GATEWAY`` (or a bot's own setting for the gateway URL)."""
        return f"ws://127.0.0.1:{self.port}{Gateway.PATH}"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{Gateway.RESUME_PATH}"

    @property
    def token(self) -> str:
        return self.state.token

    # -- time and waiting -----------------------------------------------------------------------

    def clock(self) -> float:
        """Monotonic seconds, shifted by ``advance_clock`` (drives deadlines and token expiry)."""
        return time.monotonic() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Pretend time passed, e.g. 16 minutes to expire interaction tokens."""
        self._clock_offset += seconds

    def notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_for(
        self, predicate: Callable[[], T | None], *, timeout: float = 5.0, what: str = "condition"
    ) -> T:
        """Wait until ``predicate()`` is truthy: re-checked after every request and gateway frame,
        and every 50 ms for conditions on the bot's side (its event handlers' effects)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"fake discord: no {what} within {timeout:g} s{self._violation_hint()}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))

    def _violation_hint(self) -> str:
        return f"; violations so far:\n{self.format_violations()}" if self.violations else ""

    async def wait_until_ready(self, *, timeout: float = 10.0) -> None:
        """Until a bot has identified and been sent READY and its GUILD_CREATEs."""
        await self.wait_for(
            lambda: self.gateway.session is not None and self.gateway.session.connection is not None,
            timeout=timeout,
            what="IDENTIFY from the bot",
        )

    # -- violations -----------------------------------------------------------------------------

    def violation(self, kind: ViolationKind, message: str, request: RecordedRequest | None = None) -> None:
        self.violations.append(Violation(kind, message, request))

    def format_violations(self, kinds: Iterable[ViolationKind] | None = None) -> str:
        wanted = set(kinds) if kinds is not None else set(ViolationKind)
        return "\n".join(f"  - {v}" for v in self.violations if v.kind in wanted)

    def violations_of(self, *kinds: ViolationKind) -> list[Violation]:
        return [v for v in self.violations if v.kind in kinds]

    def assert_valid(self) -> None:
        """Fail listing every violation except pings (see ``assert_no_pings``)."""
        kinds = [k for k in ViolationKind if k is not ViolationKind.PING]
        if self.violations_of(*kinds):
            raise AssertionError(
                "the bot sent requests Discord would reject or that break its rules:\n"
                + self.format_violations(kinds)
            )

    def assert_no_pings(self) -> None:
        """Fail if any message, interaction response or followup could ping someone."""
        if self.violations_of(ViolationKind.PING):
            raise AssertionError(
                "messages that could ping @everyone, roles or users:\n"
                + self.format_violations([ViolationKind.PING])
            )

    def clear_violations(self, *kinds: ViolationKind) -> list[Violation]:
        """Drop (and return) violations, all of them or of the given kinds: for tests that
        provoke a violation on purpose and then assert it was reported."""
        kinds = kinds or tuple(ViolationKind)
        dropped = [v for v in self.violations if v.kind in kinds]
        self.violations = [v for v in self.violations if v.kind not in kinds]
        return dropped

    def allow_pings(
        self,
        *,
        users: Iterable[int] = (),
        roles: Iterable[int] = (),
        everyone: bool = False,
        replied_user: bool = False,
    ) -> None:
        """Declare pings a test considers legitimate (e.g. a reminder that pings its author)."""
        self.allowance.users |= set(users)
        self.allowance.roles |= set(roles)
        self.allowance.everyone |= everyone
        self.allowance.replied_user |= replied_user

    # -- fault injection ------------------------------------------------------------------------

    def rate_limit(
        self, route: str, *, times: int = 1, retry_after: float = 0.05, is_global: bool = False
    ) -> Fault:
        """Answer the next ``times`` requests to ``route`` ("POST /channels/{channel_id}/messages")
        with 429 and ``retry_after`` seconds (per-route or global)."""
        return self._add_fault(Fault(route, 429, times, retry_after=retry_after, is_global=is_global))

    def server_error(self, route: str, *, times: int = 1, status: int = 500) -> Fault:
        """Answer the next ``times`` requests to ``route`` with a 5xx."""
        return self._add_fault(Fault(route, status, times))

    def _add_fault(self, fault: Fault) -> Fault:
        method, _, path = fault.route.partition(" ")
        if not path.startswith("/") or method not in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
            raise ValueError(
                f"route must look like 'POST /channels/{{channel_id}}/messages', got {fault.route!r}"
            )
        self.faults.append(fault)
        return fault

    # -- recording and validation ---------------------------------------------------------------

    def _bind(self, handler: Callable[[web.Request, RecordedRequest], Any]) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await handler(request, request[_RECORD])

        return handle

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        rec = await self._record(request)
        request[_RECORD] = rec
        self.requests.append(rec)
        try:
            response = await self._respond(request, handler, rec)
        except DiscordError as error:
            response = json_response(error.body(), status=error.status)
        except Exception as error:  # a bug in the fake: fail loudly, and fast (discord.py retries 5xx)
            detail = "".join(traceback.format_exception_only(error)).strip()
            self.violation(ViolationKind.FAKE, f"fake discord crashed: {detail}", rec)
            response = json_response({"message": f"fake discord crashed: {detail}", "code": 0}, status=400)
        rec.status = response.status
        if (
            isinstance(response, web.Response)
            and response.body is not None
            and response.content_type == "application/json"
        ):
            rec.response = json.loads(response.body)  # type: ignore[arg-type]
        response_too = self.validate_responses and rec.route is not None and 200 <= response.status < 300
        if self.spec_validation == "deferred" and rec.route is not None:
            self._unvalidated.append((rec, response_too))
        elif response_too and self.spec_validation == "inline":
            self._validate_response(rec)
        self.notify()
        return response

    def _validate_response(self, rec: RecordedRequest) -> None:
        assert rec.status is not None
        for problem in self.spec.validate_response(
            rec.method, rec.path, rec.status, rec.response, query=rec.query, headers=rec.headers
        ):
            self.violation(ViolationKind.FAKE, f"fake's own response breaks the spec: {problem}", rec)

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw_path = request.rel_url.raw_path
        rec = RecordedRequest(
            method=request.method,
            path=raw_path[len(API_PREFIX) :],
            query=list(request.rel_url.query.items()),
            headers=dict(request.headers),
            content_type=request.content_type if request.body_exists else "",
            at=self.clock(),
        )
        if not request.body_exists:
            return rec
        rec.has_body = True
        if request.content_type == "multipart/form-data":
            rec.multipart = True
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue  # nested multipart: Discord does not accept it either
                name = part.name or ""
                if part.filename is not None:
                    data = await part.read(decode=False)
                    rec.files.append(
                        UploadedFile(name, part.filename, part.headers.get("Content-Type"), bytes(data))
                    )
                elif name == "payload_json":
                    rec.json = await self._decode_json(await part.text(), rec)
                else:
                    rec.form[name] = await part.text()
        else:
            rec.json = await self._decode_json(await request.text(), rec)
        return rec

    async def _decode_json(self, text: str, rec: RecordedRequest) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            self.violation(ViolationKind.SPEC, f"body is not JSON: {text[:120]!r}", rec)
            return None

    async def _respond(
        self, request: web.Request, handler: Callable[[web.Request], Any], rec: RecordedRequest
    ) -> web.StreamResponse:
        operation = self.spec.find_operation(rec.method, rec.path)
        if operation is None:
            what = "method" if self.spec.has_path(rec.path) else "path"
            self.violation(
                ViolationKind.SPEC, f"{rec.method} {rec.path}: no such {what} in Discord's API", rec
            )
            status, reason = (404, "Not Found") if what == "path" else (405, "Method Not Allowed")
            raise DiscordError(status, 0, f"{status}: {reason}")
        rec.route = operation.template
        problems = self._validate(rec, operation)
        if (
            not _TOKEN_ROUTES.match(rec.path)
            and rec.headers.get("Authorization") != f"Bot {self.state.token}"
        ):
            raise DiscordError(401, 0, "401: Unauthorized")
        fault = next((f for f in self.faults if f.matches(rec)), None)
        if fault is not None:
            return fault.response()
        if problems and self.reject_invalid:
            raise DiscordError(400, 50035, "Invalid Form Body", _error_tree(problems))
        resource = request.match_info.route.resource
        if resource is None or resource.canonical != API_PREFIX + operation.template:
            self.violation(ViolationKind.UNSUPPORTED, f"the fake does not implement {operation.key}", rec)
            raise DiscordError(404, 0, "404: Not Found (not implemented by the fake)")
        return await handler(request)

    def _validate(self, rec: RecordedRequest, operation: Operation) -> list[Problem | str]:
        problems: list[Problem | str] = []
        content_types = operation.body_content_types
        if rec.has_body:
            sent = "multipart/form-data" if rec.multipart else rec.content_type
            if sent not in content_types:
                problems.append(
                    f"content type {sent!r} not accepted (spec: {sorted(content_types) or 'no body'})"
                )
            if rec.multipart and rec.json is None and not rec.form:
                problems.append("multipart request without a payload_json part")
        if self.spec_validation == "inline":
            problems += self._spec_request_problems(rec)
        limit_problems = self._limit_problems(operation.key, rec)
        for text in problems:
            self.violation(ViolationKind.SPEC, str(text), rec)
        for problem in limit_problems:
            self.violation(ViolationKind.LIMIT, str(problem), rec)
        self._check_pings(operation.key, rec)
        return [*problems, *limit_problems]

    def _spec_request_problems(self, rec: RecordedRequest) -> list[str]:
        return list(
            self.spec.validate_request(
                rec.method, rec.path, query=rec.query, headers=rec.headers, json_body=rec.json,
                has_body=rec.has_body and rec.json is not None,
            )
        )  # fmt: skip

    def _message_payloads(self, key: str, body: Any) -> list[tuple[Mapping[str, Any], tuple[str, ...], bool]]:
        """(payload, JSON path, creates a message) for every message a request writes."""
        if not isinstance(body, Mapping):
            return []
        method = key.split(" ", 1)[0]
        if key == "POST /interactions/{interaction_id}/{interaction_token}/callback":
            data = body.get("data")
            if body.get("type") in (4, 7) and isinstance(data, Mapping):
                return [(data, ("data",), body.get("type") == 4)]
            return []
        if key == "POST /channels/{channel_id}/threads":
            message = body.get("message")
            return [(message, ("message",), True)] if isinstance(message, Mapping) else []
        message_routes = (
            "/channels/{channel_id}/messages",
            "/channels/{channel_id}/messages/{message_id}",
            "/webhooks/{webhook_id}/{webhook_token}",
            "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
            "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
        )
        if key.split(" ", 1)[1] in message_routes and method in ("POST", "PATCH"):
            return [(body, (), method == "POST")]
        return []

    def _limit_problems(self, key: str, rec: RecordedRequest) -> list[Problem]:
        problems: list[Problem] = []
        for payload, base, _ in self._message_payloads(key, rec.json):
            problems += message_problems(payload, base)
            poll = payload.get("poll") if isinstance(payload, Mapping) else None
            if isinstance(poll, Mapping):
                too_long = polls.limit_problems(poll)
                problems += [Problem((*base, "poll"), "BASE_TYPE_MAX_LENGTH", text) for text in too_long]
        body = rec.json if isinstance(rec.json, Mapping) else {}
        if key.endswith("/callback") and body.get("type") == 8:
            problems += autocomplete_problems(body.get("data"))
        return problems

    def _check_pings(self, key: str, rec: RecordedRequest) -> None:
        for payload, base, creates in self._message_payloads(key, rec.json):
            if not creates and not payload.get("content"):
                continue  # an edit that does not touch the text cannot add a ping
            is_reply = bool(payload.get("message_reference"))
            for text in ping_problems(payload, self.allowance, is_reply=is_reply):
                where = ".".join(("body", *base)) + ": " if base else ""
                self.violation(ViolationKind.PING, where + text, rec)

    async def _serve_file(self, request: web.Request) -> web.Response:
        parts = request.match_info["path"].split("/")
        for part in parts:
            if part.isdigit() and int(part) in self.state.files:
                return web.Response(body=self.state.files[int(part)])
        return web.Response(status=404)

    # -- what the bot did -----------------------------------------------------------------------

    def requests_to(self, route: str) -> list[RecordedRequest]:
        """Recorded requests for "METHOD /spec/template" (or "METHOD /concrete/path")."""
        return [r for r in self.requests if route in (r.key, f"{r.method} {r.path}")]

    def messages_in(self, channel_id: int, *, ephemeral: bool = True) -> list[dict[str, Any]]:
        """Messages in a channel, oldest first; ``ephemeral=False`` leaves out ephemeral ones."""
        messages = self.state.messages.get(channel_id, {}).values()
        return [copy.deepcopy(m) for m in messages if ephemeral or not m["flags"] & MessageFlag.EPHEMERAL]

    def bot_messages(self, channel_id: int | None = None) -> list[dict[str, Any]]:
        channels = [channel_id] if channel_id is not None else list(self.state.messages)
        return [
            m
            for c in channels
            for m in self.messages_in(c)
            if int(m["author"]["id"]) == self.state.bot_user_id
        ]

    async def wait_for_message(
        self,
        channel_id: int,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        *,
        after: int | None = None,
        author_id: int | None = None,
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """The first message in a channel (by the bot unless ``author_id``), newer than ``after``."""
        author = author_id if author_id is not None else self.state.bot_user_id

        def find() -> dict[str, Any] | None:
            for message in self.state.messages.get(channel_id, {}).values():
                if int(message["author"]["id"]) != author or (
                    after is not None and int(message["id"]) <= after
                ):
                    continue
                if predicate is None or predicate(message):
                    return copy.deepcopy(message)
            return None

        return await self.wait_for(find, timeout=timeout, what=f"message in channel {channel_id}")

    # -- driving the bot: gateway events --------------------------------------------------------

    def _default_channel(self, channel_id: int | None) -> int:
        return channel_id if channel_id is not None else self.state.channel_id("general")

    def _default_user(self, user_id: int | None) -> int:
        return user_id if user_id is not None else self.state.user_id("bob")

    def _bot_sees(self, channel_id: int) -> bool:
        """Discord sends no events of a channel the bot cannot view."""
        return self.state.has_permissions(self.state.bot_user_id, channel_id, "view_channel")

    def _visible(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """MESSAGE_CREATE as this bot's intents let it see it (no MESSAGE_CONTENT → no content)."""
        event = self.rest._gateway_message(message)
        session = self.gateway.session
        if session is None or session.wants(Intent.MESSAGE_CONTENT):
            return event
        bot = self.state.bot_user_id
        channel_type = self.state.channels[int(message["channel_id"])]["type"]
        exempt = (
            int(message["author"]["id"]) == bot
            or channel_type == ChannelType.DM
            or any(int(u["id"]) == bot for u in message["mentions"])
        )
        if not exempt:
            event.update(content="", embeds=[], attachments=[], components=[])
            event.pop("poll", None)
        return event

    async def dispatch_message(
        self,
        channel_id: int | None = None,
        content: str = "",
        *,
        author_id: int | None = None,
        mentions: Sequence[int] | None = None,
        reply_to: int | None = None,
        message_reference: Mapping[str, Any] | None = None,
        embeds: Sequence[Mapping[str, Any]] = (),
        attachments: Sequence[tuple[str, bytes]] = (),
    ) -> dict[str, Any]:
        """A user posts a message: stored in history and sent as MESSAGE_CREATE.

        ``mentions`` defaults to the ``<@id>`` mentions in ``content``; ``reply_to`` is a message
        id to reply to (shorthand for ``message_reference``).  Returns the stored message.
        """
        state = self.state
        channel_id = self._default_channel(channel_id)
        author = self._default_user(author_id)
        if reply_to is not None:
            message_reference = {"message_id": str(reply_to), "channel_id": str(channel_id)}
        stored_attachments = []
        for filename, data in attachments:
            attachment_id = state.snowflakes.next()
            state.files[attachment_id] = bytes(data)
            url = f"{state.cdn_base}/attachments/{channel_id}/{attachment_id}/{filename}"
            stored_attachments.append(
                {
                    "id": str(attachment_id),
                    "filename": filename,
                    "size": len(data),
                    "url": url,
                    "proxy_url": url,
                }
            )
        message = state.create_message(
            channel_id,
            author_id=author,
            content=content,
            embeds=embeds,
            attachments=stored_attachments,
            mentions=mentions,
            message_reference=message_reference,
        )
        if mentions is None and message_reference and message.get("referenced_message"):
            replied = int(message["referenced_message"]["author"]["id"])  # a reply pings its target
            if all(int(u["id"]) != replied for u in message["mentions"]):
                message["mentions"].append(state.user(replied))
        if self._bot_sees(channel_id):
            intent = self.rest._message_intent(channel_id)
            await self.gateway.dispatch("MESSAGE_CREATE", self._visible(message), intent=intent)
        return copy.deepcopy(message)

    async def dispatch_message_edit(self, message_id: int, content: str) -> dict[str, Any]:
        """Its author edits a message's text: stored, and sent as MESSAGE_UPDATE."""
        channel_id = self.state.message_channel[message_id]
        message = self.state.edit_message(message_id, {"content": content})
        if self._bot_sees(channel_id):
            event = self.rest._gateway_message(message)
            await self.gateway.dispatch("MESSAGE_UPDATE", event, intent=self.rest._message_intent(channel_id))
        return copy.deepcopy(message)

    async def dispatch_message_delete(self, message_id: int) -> None:
        """Someone deletes a message: gone from history, and sent as MESSAGE_DELETE."""
        await self.rest._echo_delete(self.state.delete_message(message_id))

    async def dispatch_bulk_delete(self, channel_id: int, message_ids: Sequence[int]) -> None:
        """A moderator bulk-deletes messages (MESSAGE_DELETE_BULK, one event for all of them)."""
        for message_id in message_ids:
            self.state.delete_message(message_id)
        event: dict[str, Any] = {"ids": [str(m) for m in message_ids], "channel_id": str(channel_id)}
        guild_id = self.state.guild_of(channel_id)
        if guild_id is not None:
            event["guild_id"] = str(guild_id)
        if self._bot_sees(channel_id):
            await self.gateway.dispatch(
                "MESSAGE_DELETE_BULK", event, intent=self.rest._message_intent(channel_id)
            )

    async def dispatch_poll_vote(
        self, message_id: int, answer_id: int, *, user_id: int | None = None
    ) -> None:
        """A member votes in a poll (MESSAGE_POLL_VOTE_ADD, with the GUILD_MESSAGE_POLLS intent)."""
        user = self._default_user(user_id)
        message = self.state.message(message_id)
        poll = message.get("poll")
        if not poll or poll["results"]["is_finalized"]:
            raise ValueError(f"message {message_id} has no open poll")
        votes = self.state.poll_votes[message_id]
        if not poll["allow_multiselect"]:
            for voters in votes.values():
                if user in voters:
                    raise ValueError("this poll takes one answer per member")
        votes[answer_id].append(user)
        poll["results"]["answer_counts"] = polls.counts(poll, votes, self.state.bot_user_id)
        channel_id = int(message["channel_id"])
        event = {"user_id": str(user), "channel_id": str(channel_id), "message_id": str(message_id),
                 "answer_id": answer_id}  # fmt: skip
        guild_id = self.state.guild_of(channel_id)
        if guild_id is not None:
            event["guild_id"] = str(guild_id)
        if self._bot_sees(channel_id):
            await self.gateway.dispatch("MESSAGE_POLL_VOTE_ADD", event, intent=Intent.GUILD_MESSAGE_POLLS)

    async def end_poll(self, message_id: int) -> dict[str, Any]:
        """The poll closes (its time is up, or its author expired it): the counts are finalized and
        sent as MESSAGE_UPDATE, then Discord's POLL_RESULT message (type 46) replies to the poll."""
        message = self.state.message(message_id)
        votes = self.state.poll_votes[message_id]
        channel_id = int(message["channel_id"])
        polls.finalize(message["poll"], votes, self.state.bot_user_id, now=time.time())
        message["edited_timestamp"] = None
        intent = self.rest._message_intent(channel_id)
        if self._bot_sees(channel_id):  # a bot that is offline misses both events, as on Discord
            event = self.rest._gateway_message(message)
            await self.gateway.dispatch_if_connected("MESSAGE_UPDATE", event, intent=intent)
        result = self.state.create_message(
            channel_id,
            author_id=int(message["author"]["id"]),
            embeds=[polls.result_embed(message["poll"], votes)],
            message_reference={"message_id": str(message_id), "channel_id": str(channel_id), "type": 0},
            type=polls.POLL_RESULT_TYPE,
        )
        if self._bot_sees(channel_id):
            event = self.rest._gateway_message(result)
            await self.gateway.dispatch_if_connected("MESSAGE_CREATE", event, intent=intent)
        return copy.deepcopy(message)

    def reaction_event(self, message_id: int, emoji: Mapping[str, Any], user_id: int) -> dict[str, Any]:
        state = self.state
        message = state.message(message_id)
        channel_id = int(message["channel_id"])
        event: dict[str, Any] = {
            "user_id": str(user_id),
            "channel_id": str(channel_id),
            "message_id": str(message_id),
            "message_author_id": message["author"]["id"],
            "emoji": {"id": emoji.get("id"), "name": emoji.get("name")},
            "burst": False,
            "type": 0,
        }
        guild_id = state.guild_of(channel_id)
        if guild_id is not None:
            event["guild_id"] = str(guild_id)
            event["member"] = state.member(guild_id, user_id)
        return event

    async def dispatch_reaction(
        self, message_id: int, emoji: str = "👍", *, user_id: int | None = None
    ) -> None:
        """A user reacts to a message (MESSAGE_REACTION_ADD)."""
        user = self._default_user(user_id)
        parsed = {"id": None, "name": emoji}
        channel_id = self.state.message_channel[message_id]
        if self.state.add_reaction(message_id, parsed, user) and self._bot_sees(channel_id):
            await self.gateway.dispatch(
                "MESSAGE_REACTION_ADD",
                self.reaction_event(message_id, parsed, user),
                intent=Intent.GUILD_MESSAGE_REACTIONS,
            )

    # -- driving the bot: interactions ----------------------------------------------------------

    async def _dispatch_interaction(
        self,
        payload: dict[str, Any],
        *,
        channel_id: int,
        user_id: int,
        message_id: int | None = None,
        triggered_by: int | None = None,
    ) -> InteractionHandle:
        interaction = Interaction(
            id=int(payload["id"]),
            token=payload["token"],
            type=payload["type"],
            payload=payload,
            channel_id=channel_id,
            guild_id=self.state.guild_of(channel_id),
            user_id=user_id,
            dispatched_at=self.clock(),
            message_id=message_id,
            triggered_by=triggered_by,
        )
        self.state.interactions[interaction.id] = interaction
        await self.gateway.dispatch("INTERACTION_CREATE", payload)
        interaction.dispatched_at = self.clock()  # the deadline runs from delivery
        return InteractionHandle(self, interaction)

    async def dispatch_interaction(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        channel_id: int | None = None,
        user_id: int | None = None,
        locale: str = "en-US",
        command_type: int = 1,
        target_id: int | None = None,
        require_registered: bool = True,
    ) -> InteractionHandle:
        """A user runs a slash command: ``await fake.dispatch_interaction("search", {"query": "rag"})``.

        ``name`` may include subcommands ("digest subscribe").  The command must have been
        registered by the bot (its options type the values) unless ``require_registered=False``.
        Defaults: channel #general, user bob (a plain member).
        """
        channel_id = self._default_channel(channel_id)
        user = self._default_user(user_id)
        payload = self.interactions.base(
            InteractionType.APPLICATION_COMMAND, channel_id=channel_id, user_id=user, locale=locale
        )
        payload["data"] = self.interactions.command_data(
            name,
            options or {},
            guild_id=self.state.guild_of(channel_id),
            command_type=command_type,
            require_registered=require_registered,
            target_id=target_id,
        )
        self._check_command_visible(payload["data"], user, channel_id)
        return await self._dispatch_interaction(payload, channel_id=channel_id, user_id=user)

    def _check_command_visible(self, data: Mapping[str, Any], user_id: int, channel_id: int) -> None:
        """Discord only offers a command to members holding its default_member_permissions."""
        state = self.state
        command = state.find_command(data["name"], state.guild_of(channel_id), data.get("type", 1))
        required = (command or {}).get("default_member_permissions")
        if required is None or state.guild_of(channel_id) is None:
            return
        if state.permissions(user_id, channel_id) & int(required) != int(required):
            name = state.users[user_id]["username"]
            raise PermissionError(
                f"{name} cannot see /{data['name']} (default_member_permissions={required}); "
                "Discord would not let them run it"
            )

    async def dispatch_autocomplete(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        focused: str,
        channel_id: int | None = None,
        user_id: int | None = None,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """A user types into an autocomplete option; await ``handle.autocomplete_choices()``."""
        if focused not in options:
            raise ValueError(f"focused option {focused!r} must be in options")
        channel_id = self._default_channel(channel_id)
        user = self._default_user(user_id)
        payload = self.interactions.base(
            InteractionType.AUTOCOMPLETE, channel_id=channel_id, user_id=user, locale=locale
        )
        payload["data"] = self.interactions.command_data(
            name, options, guild_id=self.state.guild_of(channel_id), focused=focused
        )
        return await self._dispatch_interaction(payload, channel_id=channel_id, user_id=user)

    async def dispatch_component(
        self,
        message_id: int,
        custom_id: str,
        *,
        values: Sequence[str] | None = None,
        user_id: int | None = None,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """A user clicks a button or picks from a select menu on one of the bot's messages."""
        state = self.state
        if not state.has_message(message_id):
            raise LookupError(f"no message {message_id}")
        message = state.message(message_id)
        component = find_component(message, custom_id)
        if component is None:
            present = [
                c.get("custom_id") for c in iter_components(message["components"]) if c.get("custom_id")
            ]
            raise LookupError(f"message {message_id} has no component {custom_id!r}; it has {present}")
        if component.get("disabled"):
            raise LookupError(f"component {custom_id!r} is disabled; Discord's client would not send it")
        channel_id = int(message["channel_id"])
        user = self._default_user(user_id)
        payload = self.interactions.base(
            InteractionType.MESSAGE_COMPONENT, channel_id=channel_id, user_id=user, locale=locale
        )
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
        if component["type"] != 2:
            data["values"] = list(values or [])
        payload["data"] = data
        payload["message"] = copy.deepcopy(message)
        return await self._dispatch_interaction(
            payload, channel_id=channel_id, user_id=user, message_id=message_id
        )

    async def dispatch_modal_submit(
        self,
        opened_by: InteractionHandle,
        values: Mapping[str, str],
        *,
        user_id: int | None = None,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """A user submits the modal the bot opened in answer to ``opened_by``."""
        modal = opened_by.modal
        if modal is None:
            raise LookupError("the bot has not answered that interaction with a modal")
        inputs = [
            c["custom_id"] for c in iter_components(modal.get("components") or []) if c.get("type") == 4
        ]
        unknown = sorted(set(values) - set(inputs))
        if unknown:
            raise ValueError(
                f"modal {modal.get('custom_id')!r} has no text input(s) {unknown}; it has {inputs}"
            )
        channel_id = opened_by.record.channel_id
        user = user_id if user_id is not None else opened_by.record.user_id
        payload = self.interactions.base(
            InteractionType.MODAL_SUBMIT, channel_id=channel_id, user_id=user, locale=locale
        )

        def submitted(component: Mapping[str, Any]) -> dict[str, Any]:
            out: dict[str, Any] = {"type": component["type"], "id": component.get("id", 0)}
            if component["type"] == 4:
                out.update(custom_id=component["custom_id"], value=values.get(component["custom_id"], ""))
            if "components" in component:
                out["components"] = [submitted(c) for c in component["components"]]
            if "component" in component:
                out["component"] = submitted(component["component"])
            return out

        payload["data"] = {
            "custom_id": modal["custom_id"],
            "components": [submitted(c) for c in modal.get("components") or []],
        }
        message_id = opened_by.record.message_id
        if message_id is not None and self.state.has_message(message_id):
            payload["message"] = copy.deepcopy(self.state.message(message_id))
        return await self._dispatch_interaction(
            payload, channel_id=channel_id, user_id=user, message_id=message_id, triggered_by=opened_by.id
        )


def _error_tree(problems: Sequence[Problem | str]) -> dict[str, Any]:
    """Discord's nested ``errors`` object, e.g. {"content": {"_errors": [{code, message}]}}."""
    tree: dict[str, Any] = {}
    for problem in problems:
        node = tree
        if isinstance(problem, Problem):
            for part in problem.path:
                node = node.setdefault(str(part), {})
            code, message = problem.code, problem.message
        else:
            code, message = "SPEC_VIOLATION", problem
        node.setdefault("_errors", []).append({"code": code, "message": message})
    return tree
