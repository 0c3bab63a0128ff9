"""What the fake saw: recorded REST requests, gateway frames and rule violations."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ViolationKind(StrEnum):
    SPEC = "spec"  # request does not match Discord's OpenAPI description
    LIMIT = "limit"  # a documented limit the spec does not encode (2000 chars, 6000 embed total...)
    INTERACTION = "interaction"  # 3 s deadline, one callback, token lifetime, response order
    PING = "ping"  # a message could ping @everyone, roles or users
    UNSUPPORTED = "unsupported"  # the fake does not implement what the bot asked for
    GATEWAY = "gateway"  # protocol error on the websocket
    FAKE = "fake"  # the fake's own response broke the spec: a bug in the harness


@dataclass
class UploadedFile:
    field: str  # e.g. "files[0]"
    filename: str | None
    content_type: str | None
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class RecordedRequest:
    """One REST request as the fake received it. ``json`` is the JSON body, or for a
    multipart/form-data request the decoded ``payload_json`` part (what Discord validates)."""

    method: str
    path: str  # without the /api/v10 prefix, percent-encoding kept
    query: list[tuple[str, str]]
    headers: dict[str, str]
    content_type: str
    json: Any = None
    has_body: bool = False
    multipart: bool = False
    files: list[UploadedFile] = field(default_factory=list)
    form: dict[str, str] = field(default_factory=dict)
    route: str | None = None  # spec template, e.g. "/channels/{channel_id}/messages"
    at: float = 0.0  # fake clock
    status: int | None = None
    response: Any = None

    @property
    def key(self) -> str:
        """``"POST /channels/{channel_id}/messages"`` (or the raw path when no route matched)."""
        return f"{self.method} {self.route or self.path}"

    def query_value(self, name: str) -> str | None:
        return next((v for k, v in self.query if k == name), None)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class Violation:
    kind: ViolationKind
    message: str
    request: RecordedRequest | None = None

    def __str__(self) -> str:
        where = f" [{self.request}]" if self.request is not None else ""
        return f"{self.kind.value}{where}: {self.message}"


@dataclass
class GatewayFrame:
    """One frame on the gateway, in either direction (decoded JSON)."""

    direction: str  # "recv" (from the bot) or "send" (to the bot)
    connection: int  # 1-based connection number
    payload: dict[str, Any]

    @property
    def op(self) -> int:
        return int(self.payload.get("op", -1))

    @property
    def event(self) -> str | None:
        return self.payload.get("t")
