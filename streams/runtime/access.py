"""Who may call the worker over HTTP: bearer tokens per role, from a file (docs/operations.md).

Contract other tools rely on: the file named by REMEDY_HTTP_TOKENS_FILE holds one `ROLE TOKEN`
pair per line (blank lines and `#` comments allowed), optionally followed by the NAME of the
person or system the token belongs to (`reviewer TOKEN assoc-17`: reviews are recorded as made by
assoc-17; a token without a name is known as ROLE-<first 8 hex of its SHA-256>); a request carries
`Authorization: Bearer TOKEN`; no token or an unknown one is 401, a token of another role 403. CLI commands that call the
worker send REMEDY_HTTP_TOKEN. Without a tokens file the worker serves on loopback only, without
authentication, and says so at start; binding any other address without tokens refuses to start.
Tokens are never printed: errors name the line, not the token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from streams.errors import InvariantViolation

ROLES = ("finance", "fraud", "reviewer", "ops", "upstream")
# A token shorter than this is guessable (16 characters of a random alphabet: ~80 bits and more).
TOKEN_CHARS_MIN = 16
# A token's name is an associate or system id, as in RemedyRequested.requested_by.
NAME_CHARS_MAX = 64


@dataclass(frozen=True)
class Tokens:
    """The tokens of each role (empty: no authentication, loopback only)."""

    by_role: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    names: dict[str, str] = field(default_factory=dict, repr=False)  # token -> NAME, when the line gives one

    @property
    def enabled(self) -> bool:
        return any(self.by_role.values())

    def role_of(self, token: str) -> str | None:
        """The role a token belongs to, compared in constant time; None if it is nobody's."""
        found = None
        for role, tokens in self.by_role.items():
            for known in tokens:
                if hmac.compare_digest(known.encode(), token.encode()):
                    found = role
        return found

    def identity_of(self, token: str) -> str | None:
        """Who a token belongs to: its NAME, or ROLE-<8 hex of its SHA-256> (not the token); None if nobody."""
        role = self.role_of(token)
        if role is None:
            return None
        for known, name in self.names.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return name
        return f"{role}-{hashlib.sha256(token.encode()).hexdigest()[:8]}"

    def __repr__(self) -> str:
        return f"Tokens({', '.join(f'{role}: {len(t)}' for role, t in sorted(self.by_role.items()))})"


def load_tokens(path: str | Path | None) -> Tokens:
    """Read a tokens file; InvariantViolation names the line and what is wrong (never the token)."""
    if not path:
        return Tokens()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise InvariantViolation(f"REMEDY_HTTP_TOKENS_FILE {path}: cannot read it: {error.strerror}") from None
    by_role: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = stripped.split()
        where = f"{path}:{number}"
        if len(parts) not in (2, 3):
            raise InvariantViolation(f"{where}: expected `ROLE TOKEN` or `ROLE TOKEN NAME`, found {len(parts)} fields")
        role, token = parts[:2]
        if len(parts) == 3:
            name = parts[2]
            if len(name) > NAME_CHARS_MAX or not name.isprintable():
                raise InvariantViolation(f"{where}: field 'name': printable, at most {NAME_CHARS_MAX} characters")
            names[token] = name
        if role not in ROLES:
            raise InvariantViolation(f"{where}: field 'role': unknown role {role!r}; choose from {', '.join(ROLES)}")
        if len(token) < TOKEN_CHARS_MIN:
            raise InvariantViolation(f"{where}: field 'token': shorter than {TOKEN_CHARS_MIN} characters")
        if token in seen:
            raise InvariantViolation(f"{where}: field 'token': the same token as line {seen[token]}; one token, one role")
        seen[token] = number
        by_role.setdefault(role, []).append(token)
    if not by_role:
        raise InvariantViolation(f"REMEDY_HTTP_TOKENS_FILE {path}: no `ROLE TOKEN` line")
    return Tokens({role: tuple(tokens) for role, tokens in by_role.items()}, names)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, tokens: Tokens) -> None:
    """Refuse to serve a non-loopback address without authentication."""
    if not tokens.enabled and not is_loopback(host):
        raise InvariantViolation(
            f"REMEDY_WEB_HOST {host} is not a loopback address and no REMEDY_HTTP_TOKENS_FILE is set: the worker "
            "would serve the ledger and the rebuild to anyone who reaches it; set REMEDY_HTTP_TOKENS_FILE "
            "(lines `ROLE TOKEN`) or bind 127.0.0.1")


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def cross_origin(origin: str | None, fetch_site: str | None, host: str | None) -> bool:
    """True when a browser says the request comes from another site (a form or script elsewhere)."""
    if fetch_site and fetch_site.lower() in ("cross-site", "same-site"):
        return True
    if not origin:
        return False
    if origin == "null":
        return True
    authority = origin.split("://", 1)[-1].rstrip("/")
    return authority != (host or "")
