"""The fake gateway: a websocket speaking Discord's v10 JSON protocol.

HELLO → IDENTIFY → READY + GUILD_CREATE, heartbeats, RESUME with replay of missed events,
INVALID_SESSION, RECONNECT, REQUEST_GUILD_MEMBERS, server-side closes with any code, and
``zlib-stream`` transport compression (what discord.py asks for when zstandard is absent; with
zstandard installed it asks for ``zstd-stream``, which is served too).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from .records import GatewayFrame, ViolationKind
from .state import Intent

if TYPE_CHECKING:
    from .server import FakeDiscord

try:  # discord.py asks for zstd-stream when it can decompress it
    import zstandard
except ImportError:  # pragma: no cover - depends on the environment
    zstandard = None


class Op:
    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11


class Close:
    UNKNOWN_ERROR = 4000
    UNKNOWN_OPCODE = 4001
    DECODE_ERROR = 4002
    NOT_AUTHENTICATED = 4003
    AUTHENTICATION_FAILED = 4004
    ALREADY_AUTHENTICATED = 4005
    INVALID_SEQ = 4007
    RATE_LIMITED = 4008
    SESSION_TIMED_OUT = 4009
    INVALID_SHARD = 4010
    INVALID_API_VERSION = 4012
    INVALID_INTENTS = 4013
    DISALLOWED_INTENTS = 4014


class NoBotConnected(RuntimeError):
    pass


@dataclass
class GatewaySession:
    id: str
    identify: dict[str, Any]
    seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # every dispatch, for RESUME replay
    connection: GatewayConnection | None = None
    resumable: bool = True

    @property
    def intents(self) -> int:
        return int(self.identify.get("intents") or 0)

    def wants(self, intent: int) -> bool:
        return bool(self.intents & intent)


class GatewayConnection:
    def __init__(self, number: int, ws: web.WebSocketResponse, path: str, compress: str | None) -> None:
        self.number = number
        self.ws = ws
        self.path = path
        self.compress = compress
        self.session: GatewaySession | None = None
        self.close_code: int | None = None  # set when the fake closed it
        self._lock = asyncio.Lock()
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None
        self._zstd = (
            zstandard.ZstdCompressor().compressobj() if compress == "zstd-stream" and zstandard else None
        )

    async def send(self, payload: dict[str, Any]) -> None:
        text = json.dumps(payload, separators=(",", ":"))
        async with self._lock:  # one compression stream: frames must go out in order
            if self.ws.closed:
                return
            if self._zlib is not None:
                await self.ws.send_bytes(
                    self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                )
            elif self._zstd is not None:
                flush = zstandard.COMPRESSOBJ_FLUSH_BLOCK
                await self.ws.send_bytes(self._zstd.compress(text.encode()) + self._zstd.flush(flush))
            else:
                await self.ws.send_str(text)


class Gateway:
    """The websocket side of a ``FakeDiscord``; reach it as ``fake.gateway``."""

    PATH = "/gateway"
    RESUME_PATH = "/gateway/resume"

    def __init__(self, fake: FakeDiscord, *, heartbeat_interval_ms: int = 41_250) -> None:
        self.fake = fake
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.sessions: dict[str, GatewaySession] = {}
        self.session: GatewaySession | None = None  # the most recently identified one
        self.connections: list[GatewayConnection] = []
        self.frames: list[GatewayFrame] = []

    # -- what tests look at ---------------------------------------------------------------------

    @property
    def identifies(self) -> list[dict[str, Any]]:
        return [f.payload["d"] for f in self.frames if f.direction == "recv" and f.op == Op.IDENTIFY]

    @property
    def resumes(self) -> list[dict[str, Any]]:
        return [f.payload["d"] for f in self.frames if f.direction == "recv" and f.op == Op.RESUME]

    @property
    def intents(self) -> int | None:
        """Intents of the last IDENTIFY (compare with ``discord.Intents(...).value``)."""
        return self.session.intents if self.session else None

    @property
    def connection(self) -> GatewayConnection | None:
        """The live connection of the current session, if any."""
        return self.session.connection if self.session else None

    def sent_events(self, name: str | None = None) -> list[dict[str, Any]]:
        return [
            f.payload for f in self.frames
            if f.direction == "send" and f.op == Op.DISPATCH and name in (None, f.event)
        ]  # fmt: skip

    # -- driving the bot ------------------------------------------------------------------------

    async def dispatch(self, event: str, data: dict[str, Any], *, intent: int | None = None) -> int | None:
        """Send a DISPATCH to the current session (buffered for RESUME if it is disconnected).

        Returns the sequence number, or None when the session's intents filter the event out.
        """
        session = self.session
        if session is None:
            raise NoBotConnected(
                "no bot has identified on the fake gateway yet; start the client first "
                "(fakediscord.run_client) or await fake.wait_until_ready()"
            )
        if intent is not None and not session.wants(intent):
            return None
        return await self._dispatch_to(session, event, data)

    async def dispatch_if_connected(
        self, event: str, data: dict[str, Any], *, intent: int | None = None
    ) -> None:
        """Echo of the bot's own REST actions: dropped when no bot has identified."""
        if self.session is not None:
            await self.dispatch(event, data, intent=intent)

    async def _dispatch_to(self, session: GatewaySession, event: str, data: dict[str, Any]) -> int:
        session.seq += 1
        frame = {"op": Op.DISPATCH, "t": event, "s": session.seq, "d": data}
        session.events.append(frame)
        if session.connection is not None:
            await self._send(session.connection, frame)
        return session.seq

    async def disconnect(self, code: int = Close.UNKNOWN_ERROR, reason: str = "") -> None:
        """Close the current connection with a close code, as Discord does on errors.

        4009 (session timed out) and the non-resumable codes also invalidate the session, so a
        RESUME after them is answered with INVALID_SESSION and the bot has to IDENTIFY again.
        """
        connection = self.connection
        if connection is None:
            raise NoBotConnected("no live gateway connection to close")
        if code in (Close.SESSION_TIMED_OUT, Close.INVALID_SEQ, Close.AUTHENTICATION_FAILED):
            assert self.session is not None
            self.session.resumable = False
        await self._close(connection, code, reason)

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: the bot should reconnect and RESUME."""
        connection = self.connection
        if connection is None:
            raise NoBotConnected("no live gateway connection")
        await self._send(connection, {"op": Op.RECONNECT, "d": None})

    async def invalidate_session(self, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION; with resumable=False the bot has to IDENTIFY again."""
        connection = self.connection
        if connection is None or self.session is None:
            raise NoBotConnected("no live gateway connection")
        self.session.resumable = resumable
        await self._send(connection, {"op": Op.INVALID_SESSION, "d": resumable})

    # -- the websocket ----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        compress = request.query.get("compress")
        connection = GatewayConnection(len(self.connections) + 1, ws, request.path, compress)
        self.connections.append(connection)
        try:
            if await self._check_query(connection, request):
                await self._send(
                    connection,
                    {
                        "op": Op.HELLO,
                        "d": {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["fake-gw"]},
                    },
                )
                async for message in ws:
                    if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                        continue
                    await self._receive(connection, message.data)
        finally:
            if connection.session is not None and connection.session.connection is connection:
                connection.session.connection = None
            self.fake.notify()
        return ws

    async def _check_query(self, connection: GatewayConnection, request: web.Request) -> bool:
        query = request.query
        if query.get("v") != "10":
            return await self._refuse(
                connection, Close.INVALID_API_VERSION, f"gateway version {query.get('v')!r}"
            )
        if query.get("encoding", "json") != "json":
            return await self._refuse(connection, Close.DECODE_ERROR, f"encoding {query.get('encoding')!r}")
        supported = {None, "zlib-stream"} | ({"zstd-stream"} if zstandard else set())
        if connection.compress not in supported:
            return await self._refuse(connection, Close.DECODE_ERROR, f"compress {connection.compress!r}")
        return True

    async def _refuse(self, connection: GatewayConnection, code: int, what: str) -> bool:
        self.fake.violation(ViolationKind.GATEWAY, f"unsupported {what} in the gateway URL")
        await self._close(connection, code, what)
        return False

    async def _receive(self, connection: GatewayConnection, raw: str | bytes) -> None:
        try:
            payload = json.loads(raw)
            op = payload["op"]
        except (ValueError, KeyError, TypeError):
            self.fake.violation(ViolationKind.GATEWAY, f"undecodable gateway frame {raw[:200]!r}")
            await self._close(connection, Close.DECODE_ERROR, "decode error")
            return
        self.frames.append(GatewayFrame("recv", connection.number, payload))
        self.fake.notify()
        data = payload.get("d")
        handlers: dict[int, Callable[[GatewayConnection, Any], Any]] = {
            Op.HEARTBEAT: self._on_heartbeat,
            Op.IDENTIFY: self._on_identify,
            Op.RESUME: self._on_resume,
            Op.PRESENCE_UPDATE: self._on_ignored,
            Op.VOICE_STATE_UPDATE: self._on_ignored,
            Op.REQUEST_GUILD_MEMBERS: self._on_request_members,
        }
        handler = handlers.get(op)
        if handler is None:
            self.fake.violation(ViolationKind.GATEWAY, f"unknown gateway opcode {op}")
            await self._close(connection, Close.UNKNOWN_OPCODE, "unknown opcode")
            return
        if connection.session is None and op not in (Op.HEARTBEAT, Op.IDENTIFY, Op.RESUME):
            self.fake.violation(ViolationKind.GATEWAY, f"opcode {op} sent before IDENTIFY")
            await self._close(connection, Close.NOT_AUTHENTICATED, "not authenticated")
            return
        await handler(connection, data)

    async def _on_ignored(self, connection: GatewayConnection, data: Any) -> None:
        return None

    async def _on_heartbeat(self, connection: GatewayConnection, data: Any) -> None:
        await self._send(connection, {"op": Op.HEARTBEAT_ACK})

    async def _on_identify(self, connection: GatewayConnection, data: dict[str, Any]) -> None:
        state = self.fake.state
        if connection.session is not None:
            await self._close(connection, Close.ALREADY_AUTHENTICATED, "already authenticated")
            return
        if data.get("token") != state.token:
            await self._close(connection, Close.AUTHENTICATION_FAILED, "authentication failed")
            return
        if "intents" not in data:
            self.fake.violation(ViolationKind.GATEWAY, "IDENTIFY without intents (required in v10)")
            await self._close(connection, Close.INVALID_INTENTS, "invalid intents")
            return
        intents = int(data["intents"])
        if intents & Intent.PRIVILEGED & ~state.privileged_intents:
            await self._close(connection, Close.DISALLOWED_INTENTS, "disallowed intents")
            return
        session = GatewaySession(secrets.token_hex(16), data, connection=connection)
        self.sessions[session.id] = session
        self.session = session
        connection.session = session
        shard_id, shard_count = data.get("shard") or (0, 1)
        guild_ids = [g for g in state.guilds if (g >> 22) % shard_count == shard_id]
        ready = {
            "v": 10,
            "user": state.user_pii(state.bot_user_id),
            "user_settings": {},
            "session_type": "normal",
            "session_id": session.id,
            "resume_gateway_url": self.fake.resume_gateway_url,
            "guilds": [{"id": str(g), "unavailable": True} for g in guild_ids],
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["rotterdam", "frankfurt"],
            "application": {"id": str(state.application_id), "flags": state.application_payload()["flags"]},
            "auth_session_id_hash": secrets.token_urlsafe(32),
            "_trace": ["fake-gw"],
        }
        if "shard" in data:
            ready["shard"] = [shard_id, shard_count]
        await self._dispatch_to(session, "READY", ready)
        large_threshold = int(data.get("large_threshold") or 50)
        all_members = session.wants(Intent.GUILD_PRESENCES)
        for guild_id in guild_ids:
            guild = state.guild_create_payload(
                guild_id, all_members=all_members, large_threshold=large_threshold
            )
            await self._dispatch_to(session, "GUILD_CREATE", guild)
        self.fake.notify()

    async def _on_resume(self, connection: GatewayConnection, data: dict[str, Any]) -> None:
        session = self.sessions.get(str(data.get("session_id")))
        seq = data.get("seq") or 0
        if (
            session is None
            or not session.resumable
            or data.get("token") != self.fake.state.token
            or seq > session.seq
        ):
            await self._send(connection, {"op": Op.INVALID_SESSION, "d": False})
            return
        if session.connection is not None and session.connection is not connection:
            await self._close(session.connection, Close.UNKNOWN_ERROR, "session resumed elsewhere")
        session.connection = connection
        connection.session = session
        for frame in session.events:
            if frame["s"] > seq:
                await self._send(connection, frame)
        await self._dispatch_to(session, "RESUMED", {"_trace": ["fake-gw"]})
        self.fake.notify()

    async def _on_request_members(self, connection: GatewayConnection, data: dict[str, Any]) -> None:
        session = connection.session
        assert session is not None
        state = self.fake.state
        guild_ids = data.get("guild_id")
        for guild_id in guild_ids if isinstance(guild_ids, list) else [guild_ids]:
            guild = state.guilds.get(int(guild_id or 0))
            if guild is None:
                continue
            wanted = [int(u) for u in data.get("user_ids") or []]
            query = (data.get("query") or "").lower()
            if not wanted and not session.wants(Intent.GUILD_MEMBERS):
                self.fake.violation(
                    ViolationKind.GATEWAY, "REQUEST_GUILD_MEMBERS for all members without the intent"
                )
                await self._close(connection, Close.INVALID_INTENTS, "members intent required")
                return
            members = [
                state.member(guild.id, uid) for uid in guild.members
                if (uid in wanted if wanted else state.users[uid]["username"].lower().startswith(query))
            ]  # fmt: skip
            limit = int(data.get("limit") or 0)
            if limit:
                members = members[:limit]
            chunk: dict[str, Any] = {
                "guild_id": str(guild.id),
                "members": members,
                "chunk_index": 0,
                "chunk_count": 1,
                "presences": [],
            }
            if "nonce" in data:
                chunk["nonce"] = data["nonce"]
            missing = [str(u) for u in wanted if u not in guild.members]
            if missing:
                chunk["not_found"] = missing
            await self._dispatch_to(session, "GUILD_MEMBERS_CHUNK", chunk)

    # -- plumbing -------------------------------------------------------------------------------

    async def _send(self, connection: GatewayConnection, payload: dict[str, Any]) -> None:
        self.frames.append(GatewayFrame("send", connection.number, payload))
        await connection.send(payload)

    async def _close(self, connection: GatewayConnection, code: int, reason: str) -> None:
        connection.close_code = code
        if connection.session is not None and connection.session.connection is connection:
            connection.session.connection = None
        await connection.ws.close(code=code, message=reason.encode()[:120])
        self.fake.notify()

    async def close_all(self) -> None:
        for connection in self.connections:
            if not connection.ws.closed:
                await self._close(connection, 1001, "fake discord shutting down")
