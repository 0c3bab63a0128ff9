"""`python -m bot.ops.probe [/healthz]`: exit 0 if the local health endpoint answers 200.

The container's HEALTHCHECK: the slim image has no curl, and this imports only the standard library
(not the bot), so it costs milliseconds every 30 seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence


def probe(url: str, timeout_s: float) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200, f"{response.status} {url}"
    except urllib.error.HTTPError as exc:
        return False, f"{exc.code} {url}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"{url}: {reason}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.ops.probe", description=__doc__)
    parser.add_argument("path", nargs="?", default="/healthz", help="/healthz (default) or /readyz")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: $HEALTH_PORT")
    parser.add_argument("--timeout", type=float, default=4.0)
    args = parser.parse_args(argv)
    port = args.port if args.port is not None else int(os.environ.get("HEALTH_PORT") or 0)
    if port == 0:
        print("health endpoint is off (HEALTH_PORT is 0 or unset)", file=sys.stderr)
        return 1
    ok, detail = probe(f"http://{args.host}:{port}{args.path}", args.timeout)
    print(detail, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
