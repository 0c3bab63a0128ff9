"""The one part of the build pyproject.toml cannot say: the wheel carries the top-level `prompts/` as
the package data directory `bot/_prompts`, so an installed paperbot (the Docker image installs it
non-editable) reads its prompt templates without a source checkout (bot/core/prompts.py).
Everything else about the package is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["bot", "bot.*"]), "bot._prompts"],
    package_dir={"bot._prompts": "prompts"},
    package_data={"bot._prompts": ["*.txt"]},
)
