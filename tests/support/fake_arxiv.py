"""A local stand-in for arxiv.org's full-text endpoints (/html/ID, /e-print/ID, /pdf/ID), serving the
real papers of ../shared/data/fulltext; point ARXIV_BASE_URL at `base_url`. Each path can be given a
queue of statuses to answer first (429 with Retry-After, 503…); every request is recorded with its
time, so tests can check the pace."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

FULLTEXT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fulltext"


def manifest() -> list[dict[str, object]]:
    return [json.loads(line) for line in (FULLTEXT / "MANIFEST.jsonl").read_text().splitlines() if line]


def eprint_tarball(folder: Path) -> bytes:
    """An arXiv-style e-print: the source folder as a gzipped tar (TeX files only, as they matter)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix in {".tex", ".bbl"}:
                archive.add(path, arcname=path.relative_to(folder).as_posix())
    return buffer.getvalue()


@dataclass
class FakeArxiv:
    files: dict[str, bytes] = field(default_factory=dict)  # "/html/2501.11120" → body
    scripted: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    requests: list[tuple[float, str]] = field(default_factory=list)
    base_url: str = ""

    def serve_real_papers(self) -> None:
        for entry in manifest():
            arxiv_id, fmt = str(entry["arxiv_id"]), entry["format"]
            files = [FULLTEXT / str(f) for f in entry["files"]]  # type: ignore[attr-defined]
            if fmt == "html":
                self.files[f"/html/{arxiv_id}"] = files[0].read_bytes()
            elif fmt == "pdf":
                self.files[f"/pdf/{arxiv_id}"] = files[0].read_bytes()
            elif fmt == "latex":
                self.files[f"/e-print/{arxiv_id}"] = eprint_tarball(FULLTEXT / str(entry["slug"]) / "latex")

    def answer_first(self, path: str, *responses: tuple[int, dict[str, str]]) -> None:
        self.scripted.setdefault(path, []).extend(responses)

    def paths(self) -> list[str]:
        return [path for _, path in self.requests]

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((time.monotonic(), request.path))
        queue = self.scripted.get(request.path)
        if queue:
            status, headers = queue.pop(0)
            return web.Response(status=status, headers=headers, text=f"scripted {status}")
        body = self.files.get(request.path)
        if body is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=body)


@pytest.fixture
async def fake_arxiv() -> AsyncIterator[FakeArxiv]:
    fake = FakeArxiv()
    app = web.Application()
    app.router.add_get("/{kind}/{arxiv_id}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.base_url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()
