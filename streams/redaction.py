"""Secrets never printed: URLs and texts with their passwords and tokens replaced by `***`."""

from __future__ import annotations

import urllib.parse

MASK = "***"


def redacted_url(url: str) -> str:
    """The URL with its password (and any `password=`/`token=` query value) masked."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    sensitive = ("password", "token", "secret")
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if parts.password is None and not any(k.lower() in sensitive for k, _ in query):
        return url
    if parts.password is not None:
        user = parts.username or ""
        host = netloc.rsplit("@", 1)[-1]
        netloc = f"{user}:{MASK}@{host}"
    if any(k.lower() in sensitive for k, _ in query):
        query = [(k, MASK if k.lower() in sensitive else v) for k, v in query]
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, urllib.parse.urlencode(query, safe="*"),
                                        parts.fragment))
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def scrubbed(text: str, *secrets: str) -> str:
    """`text` with every secret (and the password inside any secret URL) replaced by `***`."""
    for secret in secrets:
        if not secret:
            continue
        try:
            parts = urllib.parse.urlsplit(secret)
            password = parts.password
        except ValueError:
            password = None
        if "://" in secret:
            text = text.replace(secret, redacted_url(secret))
        for value in (password, urllib.parse.quote(password or "", safe="") if password else None):
            if value and len(value) >= 3:
                text = text.replace(value, MASK)
        if "://" not in secret and len(secret) >= 3:
            text = text.replace(secret, MASK)
    return text


class LogGuard:
    """A logging filter: masks secrets in every record, and lets an identical warning or error through
    once per `window_s`, adding how many repeats it held back (a broker outage logged 8,019 lines)."""

    def __init__(self, secrets: tuple[str, ...], window_s: float = 10.0, keys_max: int = 10_000):
        self.secrets = secrets
        self.window_s = window_s
        self.keys_max = keys_max
        self.seen: dict[tuple, list] = {}

    def filter(self, record) -> bool:
        import logging
        import time

        message = record.getMessage()
        clean = scrubbed(message, *self.secrets) if self.secrets else message
        if record.exc_info and self.secrets:
            record.exc_text = scrubbed(logging.Formatter().formatException(record.exc_info), *self.secrets)
            record.exc_info = None
        if record.levelno >= logging.WARNING:
            key = (record.name, record.levelno, clean)
            now = time.monotonic()
            entry = self.seen.get(key)
            if entry is not None and now - entry[0] < self.window_s:
                entry[1] += 1
                return False
            if entry is not None and entry[1]:
                clean = f"{clean} ({entry[1]} identical lines held back in the last {self.window_s:g}s)"
            if len(self.seen) >= self.keys_max:
                self.seen.clear()
            self.seen[key] = [now, 0]
        if clean != message:
            record.msg, record.args = clean, None
        return True
