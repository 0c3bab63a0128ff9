"""Discord's official OpenAPI description, loaded once, used to validate what the bot sends.

Where the spec is: the plugin's ``--discord-spec`` option or ``discord_spec`` ini setting, else
``$DISCORD_OPENAPI_SPEC``, else ``shared/discord-api-spec/openapi.json`` beside the project that holds
this package (three directories up from this file).  openapi-core does the request/response
validation; this module adds the operation lookup the fake server needs (which spec path template a
concrete URL belongs to, and which content types it accepts) and turns jsonschema's errors into
short, readable lines with the JSON path of the offending field.
"""

from __future__ import annotations

import copy
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from jsonschema.exceptions import ValidationError as SchemaError
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.testing import MockResponse
from openapi_core.validation.request.exceptions import ParameterValidationError
from werkzeug.datastructures import Headers, ImmutableMultiDict

API_PREFIX = "/api/v10"
SPEC_HOST = "https://discord.com"
_DEFAULT_SPEC = Path(__file__).resolve().parents[3] / "shared" / "discord-api-spec" / "openapi.json"
SPEC_PATH = Path(os.environ.get("DISCORD_OPENAPI_SPEC", _DEFAULT_SPEC))


@dataclass(frozen=True)
class Operation:
    """One ``method path`` pair of the spec."""

    method: str  # lower case, as in the spec
    template: str  # e.g. "/channels/{channel_id}/messages"
    definition: Mapping[str, Any]

    @property
    def body_content_types(self) -> frozenset[str]:
        body = self.definition.get("requestBody") or {}
        return frozenset((body.get("content") or {}).keys())

    @property
    def key(self) -> str:
        return f"{self.method.upper()} {self.template}"


@dataclass(frozen=True)
class _PathPattern:
    template: str
    regex: re.Pattern[str]
    literal_segments: int


class _SpecRequest:
    """The request protocol openapi-core expects, built from what the fake server received."""

    def __init__(
        self,
        method: str,
        path: str,
        query: Iterable[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes | None,
        content_type: str,
    ) -> None:
        self.host_url = SPEC_HOST
        self.method = method.lower()
        self.path = API_PREFIX + path
        self.body = body
        self.content_type = content_type
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(query)),
            header=Headers(dict(headers)),
            cookie=ImmutableMultiDict(),
        )


class DiscordSpec:
    """Discord's OpenAPI 3.1 description plus helpers; build it once per test session."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        document = _accept_integer_snowflakes(copy.deepcopy(dict(document)))
        self.document = document
        # The document is Discord's own; checking the spec itself would only cost seconds.
        self._api = OpenAPI.from_dict(dict(document), config=Config(spec_validator_cls=None))
        self._patterns = self._compile_paths(document["paths"])
        self._lock = threading.Lock()

    _shared: ClassVar[dict[Path, DiscordSpec]] = {}

    @classmethod
    def load(cls, path: Path = SPEC_PATH) -> DiscordSpec:
        with path.open(encoding="utf-8") as fh:
            return cls(json.load(fh))

    @classmethod
    def shared(cls, path: Path = SPEC_PATH) -> DiscordSpec:
        """The process-wide instance for ``path`` (loaded on first use: parsing takes seconds)."""
        key = path.resolve()
        if key not in cls._shared:
            cls._shared[key] = cls.load(key)
        return cls._shared[key]

    # -- operation lookup ---------------------------------------------------------------------

    @staticmethod
    def _compile_paths(paths: Mapping[str, Any]) -> list[_PathPattern]:
        patterns = []
        for template in paths:
            segments = template.strip("/").split("/")
            regex = "".join(
                "/[^/]+" if seg.startswith("{") and seg.endswith("}") else "/" + re.escape(seg)
                for seg in segments
            )
            literal = sum(1 for seg in segments if not seg.startswith("{"))
            patterns.append(_PathPattern(template, re.compile(regex + "$"), literal))
        # A literal segment beats a parameter: /messages/@original before /messages/{message_id}.
        patterns.sort(key=lambda p: -p.literal_segments)
        return patterns

    def find_operation(self, method: str, path: str) -> Operation | None:
        """The spec operation for a concrete API path (without the ``/api/v10`` prefix)."""
        method = method.lower()
        for pattern in self._patterns:
            if pattern.regex.match(path):
                item = self.document["paths"][pattern.template]
                if method in item:
                    return Operation(method, pattern.template, item[method])
        return None

    def has_path(self, path: str) -> bool:
        return any(p.regex.match(path) for p in self._patterns)

    # -- validation -----------------------------------------------------------------------------

    def validate_request(
        self,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        has_body: bool = False,
    ) -> list[str]:
        """Problems with one request, each a readable line; empty when the request is valid."""
        body = json.dumps(json_body).encode() if has_body else None
        request = _SpecRequest(
            method, path, query, headers or {}, body, "application/json" if has_body else ""
        )
        with self._lock:  # openapi-core's lazily built caches are not documented as thread safe
            errors = list(self._api.iter_request_errors(request))
        return [line for error in errors for line in _describe(error, "body")]

    def validate_response(
        self,
        method: str,
        path: str,
        status: int,
        json_body: Any,
        *,
        query: Iterable[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Problems with a response the fake produced (keeps the fake honest)."""
        request = _SpecRequest(method, path, query, headers or {}, None, "")
        data = b"" if json_body is None else json.dumps(json_body).encode()
        content_type = "" if json_body is None else "application/json"
        response = MockResponse(data, status_code=status, content_type=content_type)
        with self._lock:
            errors = list(self._api.iter_response_errors(request, response))
        return [line for error in errors for line in _describe(error, "response")]


def _accept_integer_snowflakes(document: dict[str, Any]) -> dict[str, Any]:
    """The one deliberate relaxation of Discord's description.

    The spec types a snowflake as a decimal string, but Discord accepts JSON integers for them in
    request bodies and discord.py sends integers (``message_reference.message_id``,
    ``allowed_mentions.users``...).  Without this every reply would be reported.
    """
    snowflake = document["components"]["schemas"]["SnowflakeType"]
    document["components"]["schemas"]["SnowflakeType"] = {
        "oneOf": [snowflake, {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}]
    }
    return document


# -- error formatting ---------------------------------------------------------------------------


def _describe(error: Exception, root: str) -> Iterator[str]:
    if isinstance(error, ParameterValidationError):
        root = f"{error.location} parameter {error.name!r}"
    cause = error.__cause__
    schema_errors = list(getattr(cause, "schema_errors", None) or [])
    if not schema_errors:
        text = str(error)
        if cause is not None and str(cause) not in text:
            text = f"{text}: {cause}"
        yield text
        return
    for schema_error in schema_errors:
        if isinstance(schema_error, SchemaError):
            for leaf in _leaf_errors(schema_error):
                yield f"{_json_path(root, leaf.absolute_path)}: {_message(leaf)}"
        else:
            yield f"{root}: {_short(str(schema_error))}"


def _depth(error: SchemaError) -> int:
    nested = [_depth(sub) for sub in error.context or []]
    return max([len(error.absolute_path), *nested])


def _leaf_errors(error: SchemaError) -> list[SchemaError]:
    """Descend into anyOf/oneOf failures to the branch that got furthest into the document.

    "{...} is not valid under any of the given schemas" says nothing; the interesting error is
    the one in the branch whose discriminator matched (e.g. the ``type: 4`` callback schema).
    """
    if not error.context:
        return [error]
    branches: dict[Any, list[SchemaError]] = {}
    for sub in error.context:
        key = sub.relative_schema_path[0] if sub.relative_schema_path else None
        branches.setdefault(key, []).append(sub)

    def rank(subs: list[SchemaError]) -> tuple[bool, int, int]:
        # Skip branches of the wrong JSON type (the "null" of a nullable object), then prefer the
        # branch with the fewest failures (it almost matched), then the one that got deepest.
        wrong_type = any(s.validator == "type" and s.absolute_path == error.absolute_path for s in subs)
        return wrong_type, len(subs), -max(_depth(s) for s in subs)

    best = min(branches.values(), key=rank)
    if max(_depth(s) for s in best) <= len(error.absolute_path):
        return [error]  # no branch got further than the union itself
    return [leaf for sub in best for leaf in _leaf_errors(sub)]


def _json_path(root: str, parts: Iterable[Any]) -> str:
    text = root
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _message(error: SchemaError) -> str:
    instance, limit = error.instance, error.validator_value
    if error.validator in ("maxLength", "minLength") and isinstance(instance, str):
        bound = "at most" if error.validator == "maxLength" else "at least"
        return f"{len(instance)} characters, {bound} {limit} allowed"
    if error.validator in ("maxItems", "minItems") and isinstance(instance, list):
        bound = "at most" if error.validator == "maxItems" else "at least"
        return f"{len(instance)} items, {bound} {limit} allowed"
    text = error.message
    shown = repr(instance)
    if len(shown) > 60 and text.startswith(shown):
        text = _short(shown, 60) + text[len(shown) :]
    return _short(text)


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
