"""A small Qdrant REST server for fault tests: real HTTP on 127.0.0.1, real Qdrant semantics.

There is no Qdrant server binary here, so requests are parsed into qdrant-client's own REST request
models (`qdrant_client.http.models`) and executed on a qdrant-client local-mode store
(`QdrantClient(":memory:")`); answers use Qdrant's envelope `{"result": ..., "status": "ok",
"time": ...}`. Only the endpoints `ServerPaperIndex` calls are served; any other path is logged and
answered 404, so a new call shows up as a failing test rather than a silent success.

The server can be stopped and started again on the same port while the store survives, which is
what a Qdrant restart looks like to the bot:

    qdrant = FakeQdrant()     # or FakeQdrant(port=...) to come up where a client already points
    qdrant.start()            # QDRANT_URL=qdrant.url
    qdrant.stop()             # connection refused; open keep-alive connections are cut
    qdrant.start()            # same port, same collections and points
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import BaseModel, TypeAdapter
from qdrant_client import QdrantClient, models

log = logging.getLogger(__name__)

_NAME = r"(?P<name>[^/]+)"


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int


def _json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, list):
        return [_json(item) for item in value]
    return value


class _NotFound(Exception):
    pass


class FakeQdrant:
    def __init__(self, port: int | None = None) -> None:
        self.store = QdrantClient(location=":memory:")
        self.port = port  # None: a free port, chosen on the first start()
        self.delay_s = 0.0  # answer this late: a hung or overloaded server
        self.requests: list[Seen] = []
        self.unknown: list[str] = []
        self._lock = threading.Lock()  # local mode is not thread-safe; the HTTP server is threaded
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._routes: list[tuple[str, re.Pattern[str], Callable[[str, Any], Any]]] = [
            ("GET", re.compile(r"/collections"), self._collections),
            ("GET", re.compile(rf"/collections/{_NAME}/exists"), self._exists),
            ("PUT", re.compile(rf"/collections/{_NAME}"), self._create_collection),
            ("PUT", re.compile(rf"/collections/{_NAME}/index"), self._create_index),
            ("PUT", re.compile(rf"/collections/{_NAME}/points"), self._upsert),
            ("POST", re.compile(rf"/collections/{_NAME}/points"), self._retrieve),
            ("POST", re.compile(rf"/collections/{_NAME}/points/payload"), self._set_payload),
            ("POST", re.compile(rf"/collections/{_NAME}/points/delete"), self._delete),
            ("POST", re.compile(rf"/collections/{_NAME}/points/query"), self._query),
            ("POST", re.compile(rf"/collections/{_NAME}/points/count"), self._count),
        ]

    # ------------------------------------------------------------------ life cycle

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the fake Qdrant was never started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Listen (again) on the same port as before, or on a free one the first time."""
        if self._server is not None:
            return
        fake = self

        class Handler(_Handler):
            owner = fake

        server = _Server(("127.0.0.1", self.port or 0), Handler)
        server.daemon_threads = True
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-qdrant", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and cut every open connection, as a crashed or restarting Qdrant does."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections, self._connections = set(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def close(self) -> None:
        self.stop()
        self.store.close()

    def __enter__(self) -> FakeQdrant:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ dispatch

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        for route_method, pattern, action in self._routes:
            match = pattern.fullmatch(path)
            if route_method == method and match is not None:
                name = match.groupdict().get("name", "")
                try:
                    with self._lock:
                        return 200, action(name, body)
                except _NotFound as exc:
                    return 404, {"status": {"error": f"Not found: {exc}"}, "time": 0}
                except ValueError as exc:  # local mode's "collection not found" and bad requests
                    status = 404 if "not found" in str(exc).lower() else 400
                    return status, {"status": {"error": str(exc)}, "time": 0}
        log.warning("fake_qdrant.unknown_endpoint %s %s", method, path)
        self.unknown.append(f"{method} {path}")
        return 404, {"status": {"error": f"fake Qdrant does not serve {method} {path}"}, "time": 0}

    def _collection(self, name: str) -> str:
        if not self.store.collection_exists(name):
            raise _NotFound(f"Collection `{name}` doesn't exist!")
        return name

    # ------------------------------------------------------------------ endpoints

    def _collections(self, _name: str, _body: Any) -> Any:
        return _json(self.store.get_collections())

    def _exists(self, name: str, _body: Any) -> Any:
        return {"exists": self.store.collection_exists(name)}

    def _create_collection(self, name: str, body: Any) -> Any:
        request = models.CreateCollection.model_validate(body or {})
        if self.store.collection_exists(name):
            raise ValueError(f"Wrong input: Collection `{name}` already exists!")
        return self.store.create_collection(
            name, vectors_config=request.vectors, sparse_vectors_config=request.sparse_vectors
        )

    def _create_index(self, name: str, body: Any) -> Any:
        request = models.CreateFieldIndex.model_validate(body)
        self.store.create_payload_index(
            self._collection(name), request.field_name, field_schema=request.field_schema
        )
        return _updated()

    def _upsert(self, name: str, body: Any) -> Any:
        request = TypeAdapter(models.PointInsertOperations).validate_python(body)
        points = request.points if isinstance(request, models.PointsList) else request.batch
        self.store.upsert(self._collection(name), points=points)
        return _updated()

    def _retrieve(self, name: str, body: Any) -> Any:
        request = models.PointRequest.model_validate(body)
        records = self.store.retrieve(
            self._collection(name),
            ids=request.ids,
            with_payload=request.with_payload if request.with_payload is not None else True,
            with_vectors=request.with_vector if request.with_vector is not None else False,
        )
        return _json(records)

    def _set_payload(self, name: str, body: Any) -> Any:
        request = models.SetPayload.model_validate(body)
        selector: Any = request.points if request.points is not None else request.filter
        self.store.set_payload(
            self._collection(name), payload=request.payload, points=selector, key=request.key
        )
        return _updated()

    def _delete(self, name: str, body: Any) -> Any:
        selector = TypeAdapter(models.PointsSelector).validate_python(body)
        self.store.delete(self._collection(name), points_selector=selector)
        return _updated()

    def _query(self, name: str, body: Any) -> Any:
        request = models.QueryRequest.model_validate(body)
        response = self.store.query_points(
            self._collection(name),
            query=request.query,
            using=request.using,
            prefetch=request.prefetch,
            query_filter=request.filter,
            limit=request.limit if request.limit is not None else 10,
            offset=request.offset,
            with_payload=request.with_payload if request.with_payload is not None else False,
            score_threshold=request.score_threshold,
        )
        return _json(response)

    def _count(self, name: str, body: Any) -> Any:
        request = models.CountRequest.model_validate(body or {})
        exact = request.exact if request.exact is not None else True
        return _json(self.store.count(self._collection(name), count_filter=request.filter, exact=exact))


def _updated() -> dict[str, Any]:
    return {"operation_id": 0, "status": "completed"}


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A connection reset by a client that timed out, or cut by stop(): expected in fault tests.
        log.debug("fake_qdrant.connection_error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    owner: FakeQdrant
    protocol_version = "HTTP/1.1"  # keep-alive, like the real server: stop() must cut pooled connections

    def setup(self) -> None:
        super().setup()
        with self.owner._lock:
            self.owner._connections.add(self.connection)

    def finish(self) -> None:
        with self.owner._lock:
            self.owner._connections.discard(self.connection)
        with contextlib.suppress(OSError):  # the connection was cut by stop()
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("fake_qdrant " + format, *args)

    def _serve(self) -> None:
        started = time.perf_counter()
        if self.owner.delay_s:
            time.sleep(self.owner.delay_s)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError as exc:
            status, payload = 400, {"status": {"error": f"invalid JSON: {exc}"}, "time": 0}
        else:
            status, payload = self.owner.handle(self.command, path, body)
            if status == 200:
                payload = {"result": payload, "status": "ok", "time": time.perf_counter() - started}
        self.owner.requests.append(Seen(self.command, path, status))
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client gave up (timeout) or stop() cut the connection

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve  # http.server's handler names
