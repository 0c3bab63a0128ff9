"""What is known of each paper's full text (format, sections, passages), one small JSON file per
paper under the data dir; `/paper` reads it to list the sections."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError


class FullTextRecord(BaseModel):
    paper_id: str
    source_format: str  # pdf, latex or html
    source: str  # the file or URL it was read from
    sections: list[str] = Field(default_factory=list)  # "§3.2 Training", in order
    passages: int = 0
    parse_seconds: float = 0.0
    indexed_at: dt.datetime


class FullTextStore:
    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def _path(self, paper_id: str) -> Path:
        return self._directory / f"{hashlib.sha1(paper_id.encode()).hexdigest()[:24]}.json"

    def get(self, paper_id: str) -> FullTextRecord | None:
        try:
            record = FullTextRecord.model_validate_json(self._path(paper_id).read_text("utf-8"))
        except (OSError, ValidationError, json.JSONDecodeError):
            return None
        return record if record.paper_id == paper_id else None

    def put(self, record: FullTextRecord) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        path = self._path(record.paper_id)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(record.model_dump_json(), "utf-8")
        temporary.replace(path)
