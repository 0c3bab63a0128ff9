"""A few read-only Discord REST calls for `doctor`, over httpx: no gateway, no discord.py state."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from bot import __version__

USER_AGENT = f"DiscordBot (https://github.com/paperbot, {__version__}) paperbot-doctor"
_MAX_RATE_LIMIT_WAIT_S = 5.0


class DiscordAPIError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"{status} {message}" + (f" (code {code})" if code else ""))
        self.status = status
        self.code = code
        self.message = message


class DiscordREST:
    """`async with DiscordREST(api_base, token) as api: await api.get("/users/@me")`."""

    def __init__(self, api_base: str, token: str, *, timeout_s: float = 10.0) -> None:
        self._client = httpx.AsyncClient(
            base_url=api_base.rstrip("/"),
            headers={"Authorization": f"Bot {token}", "User-Agent": USER_AGENT},
            timeout=timeout_s,
        )

    async def __aenter__(self) -> DiscordREST:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get(self, path: str) -> Any:
        for _attempt in range(3):
            response = await self._client.get(path)
            if response.status_code == 429:
                wait = _retry_after(response)
                if wait <= _MAX_RATE_LIMIT_WAIT_S:
                    await asyncio.sleep(wait)
                    continue
            if response.status_code >= 400:
                raise _error(response)
            return response.json()
        raise _error(response)


def _retry_after(response: httpx.Response) -> float:
    try:
        return float(response.json().get("retry_after", 1.0))
    except (ValueError, AttributeError):
        return float(response.headers.get("Retry-After") or 1.0)


def _error(response: httpx.Response) -> DiscordAPIError:
    code, message = 0, response.reason_phrase or "error"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = int(body.get("code") or 0)
        message = str(body.get("message") or message)
    return DiscordAPIError(response.status_code, code, message)
