"""Calling the running worker's HTTP API from a CLI command, with REMEDY_HTTP_TOKEN."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from streams.errors import InvariantViolation, TransientError
from streams.runtime.settings import Settings


def call_worker(settings: Settings, method: str, path: str, body: dict | None, timeout_s: float,
                needs: str) -> object:
    """The worker's JSON answer. A refusal raises InvariantViolation with the worker's reason; no
    worker answering raises TransientError saying what the command `needs` a worker for."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{settings.worker_url}{path}", data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if settings.http_token:
        request.add_header("Authorization", f"Bearer {settings.http_token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read() or b"{}").get("error")
        except (json.JSONDecodeError, AttributeError):
            message = None
        raise InvariantViolation(message or f"the worker answered HTTP {error.code}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        raise TransientError(f"no worker answers at {settings.worker_url} ({error}); {needs}") from None
