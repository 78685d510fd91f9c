"""Container health check: exit 0 when ``/healthz`` answers 200, 1 otherwise.

Used by the Dockerfile's HEALTHCHECK (no curl in the image)::

    python -m app.observability.healthcheck            # http://127.0.0.1:$CONVLENS_PORT/healthz
    python -m app.observability.healthcheck http://api:8000/healthz
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def healthz_url() -> str:
    """The local /healthz URL for the port the service listens on (CONVLENS_PORT, default 8000)."""
    port = os.environ.get("CONVLENS_PORT", "8000")
    return f"http://127.0.0.1:{port}/healthz"


def check(url: str, timeout: float = 4.0) -> bool:
    """True when ``url`` answers 200 within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed local URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    url = args[0] if args else healthz_url()
    healthy = check(url)
    print(f"{url}: {'healthy' if healthy else 'unhealthy'}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
