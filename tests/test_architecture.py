"""Services are usable without Discord: importing them must not import discord.py."""

from __future__ import annotations

import subprocess
import sys


def test_services_never_import_discord() -> None:
    code = (
        "import sys; import bot.app.services, bot.rag.iter_retgen, bot.ingest.pipeline, "
        "bot.retrieval.search, bot.digest, bot.db, bot.app.cli; print('discord' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
