"""The import rule of docs/architecture.md, enforced: each package imports only the layers below it.

Layers, lowest first (a package may import its own modules and those of the packages listed for it):

    core                      settings, errors, logs, metrics, the Paper model, prompts, timing rules
    retrieval, limits         tokens, chunking, embeddings, index, search · token budget, rate limits
    llm                       the OpenAI-compatible client and the embedded server
    ingest, rag, db           parsing and indexing · Iter-RetGen · the state database
    fulltext                  papers' full texts: parsers, arXiv fetch, passages into the index
    digest, memory            digests: picking, summaries, exactly-once posting · channel memory
    discord, ops              the Discord shell · health, metrics endpoint, doctor
    app                       entry points and the one wiring point (cli, daemon, services)

Imports under `if TYPE_CHECKING:` are annotations only; they are held to the same rule, except that
the Discord shell may name `bot.app.services.Services`, the object it is handed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BOT = Path(__file__).resolve().parents[1] / "bot"

ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "retrieval": {"core"},
    "limits": {"core"},
    "llm": {"core", "retrieval"},
    "ingest": {"core", "retrieval"},
    "fulltext": {"core", "retrieval", "ingest"},
    "rag": {"core", "retrieval", "llm"},
    "db": {"core"},
    "digest": {"core", "retrieval", "limits", "llm", "ingest", "rag", "db"},
    "memory": {"core", "retrieval", "llm", "rag", "db"},
    "library": {"core", "retrieval", "limits", "llm", "ingest", "rag", "db", "digest"},
    "discord": {"core", "retrieval", "limits", "llm", "rag", "digest", "memory", "library"},
    "ops": {"core", "retrieval", "llm", "db", "discord"},
    "app": {
        "core",
        "retrieval",
        "limits",
        "llm",
        "ingest",
        "fulltext",
        "rag",
        "db",
        "digest",
        "memory",
        "library",
        "discord",
        "ops",
    },
}
# Module-level exceptions, each with its reason.
ALLOWED_MODULES: dict[str, set[str]] = {
    # The repository stores the digest's records (subscriptions, runs, ledger): it knows their types,
    # not the digest's logic.
    "db": {"bot.digest.records", "bot.library.records"},
}
TYPE_ONLY: dict[str, set[str]] = {"discord": {"bot.app.services"}}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. bot.discord.bot
    target: str  # what it imports, e.g. bot.digest.service
    type_only: bool

    @property
    def package(self) -> str:
        return _package(self.module)

    @property
    def target_package(self) -> str:
        return _package(self.target)


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else "bot"  # bot/__init__, bot/__main__


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, type_only: bool = False) -> Iterator[Import]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.body:
                yield from _imports(ast.Module(body=[child], type_ignores=[]), module, True)
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "bot":
                continue  # `from bot import __version__`
            if node.module.startswith("bot."):
                yield Import(module, node.module, type_only)
        elif isinstance(node, ast.Import):
            yield from (Import(module, a.name, type_only) for a in node.names if a.name.startswith("bot."))
        else:
            yield from _imports(node, module, type_only)


def all_imports() -> list[Import]:
    found = []
    for path in sorted(BOT.rglob("*.py")):
        module = ".".join(path.relative_to(BOT.parent).with_suffix("").parts)
        found += _imports(ast.parse(path.read_text()), module)
    return found


def _allowed(edge: Import) -> bool:
    source, target = edge.package, edge.target_package
    if source in {"bot", target}:
        return True
    if target in ALLOWED[source]:
        return True
    if any(edge.target == m or edge.target.startswith(m + ".") for m in ALLOWED_MODULES.get(source, ())):
        return True
    return edge.type_only and edge.target in TYPE_ONLY.get(source, set())


def test_every_package_has_a_place_in_the_layers() -> None:
    packages = {p.name for p in BOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(ALLOWED)
    assert not [p.name for p in BOT.glob("*.py") if p.name not in {"__init__.py", "__main__.py"}]


def test_each_package_imports_only_the_layers_below_it() -> None:
    imports = all_imports()
    assert len(imports) > 200  # the walk found the code
    violations = [f"{e.module} imports {e.target}" for e in imports if not _allowed(e)]
    assert violations == []


def test_the_rule_catches_a_violation() -> None:
    assert not _allowed(Import("bot.discord.cogs.digest", "bot.db.repository", type_only=False))
    assert not _allowed(Import("bot.retrieval.search", "bot.rag.iter_retgen", type_only=False))
    assert not _allowed(Import("bot.discord.bot", "bot.app.services", type_only=False))
    assert _allowed(Import("bot.discord.bot", "bot.app.services", type_only=True))


def test_the_discord_shell_never_touches_the_database_and_cogs_never_import_each_other() -> None:
    imports = all_imports()
    assert [e for e in imports if e.package == "discord" and e.target_package == "db"] == []
    cogs = [
        e for e in imports
        if e.module.startswith("bot.discord.cogs.") and e.target.startswith("bot.discord.cogs.")
    ]  # fmt: skip
    assert cogs == []


def test_services_never_import_discord() -> None:
    code = (
        "import sys; import bot.app.services, bot.rag.iter_retgen, bot.ingest.pipeline, "
        "bot.retrieval.search, bot.digest.service, bot.digest.subscriptions, bot.db, bot.app.cli, "
        "bot.ops.doctor; print('discord' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
