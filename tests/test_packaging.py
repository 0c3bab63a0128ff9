"""The wheel is what the Docker image installs (`pip install .`, non-editable): it must carry every module
and every prompt template, and the installed package must read its templates without a source tree."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "bot", "prompts")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the sources, so the build's egg-info and build/ stay out of the checkout."""
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    command = ["pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "--wheel-dir", str(out), "."]
    subprocess.run(
        [sys.executable, "-m", *command],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("paperbot-*.whl")
    return built


def test_the_wheel_carries_every_prompt_and_every_module(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        prompts = sorted((ROOT / "prompts").glob("*.txt"))
        assert prompts
        for prompt in prompts:
            packaged = f"bot/_prompts/{prompt.name}"
            assert packaged in names, f"{prompt.name} is not in the wheel"
            assert archive.read(packaged) == prompt.read_bytes()
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "bot").rglob("*.py")}
    assert modules - names == set(), "modules missing from the wheel (setup.py's package list)"


def test_the_installed_package_reads_its_prompts_without_the_source_tree(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    code = (
        "import json, bot.core.prompts as p; "
        "print(json.dumps({'module': p.__file__, 'dir': str(p.prompts_dir()), "
        "'templates': {n: sorted(p.load_prompt(n).placeholders) for n in p.prompt_names()}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,  # not the checkout: `bot` can only come from the unpacked wheel
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found = json.loads(result.stdout)
    assert found["module"].startswith(str(site))
    assert found["dir"] == str(site / "bot" / "_prompts")
    assert set(found["templates"]) == {p.stem for p in (ROOT / "prompts").glob("*.txt")}
    assert found["templates"]["answer"] == ["cannot_answer", "question", "sources"]
