"""The privacy key on disk and the erasure event the worker publishes (docs/privacy.md).

Shell code: it creates files and reads the wall clock. The pseudonym itself is pure
(streams/core/privacy.py).
"""

from __future__ import annotations

import dataclasses
import os
import secrets

from streams.core.privacy import Erasure
from streams.errors import InvariantViolation, RemedyLedgerError
from streams.runtime.settings import Settings

# 32 random bytes (256 bits) as 64 hex characters: the generated key.
GENERATED_KEY_BYTES = 32
# Owner read/write only: the key turns pseudonyms back into a way to confirm a customer id.
KEY_FILE_MODE = 0o600


class ErasureBusy(RemedyLedgerError):
    """An erasure cannot run now (a projection rebuild is running); try again later."""


def with_privacy_key(settings: Settings) -> Settings:
    """Settings carrying the privacy key; generates <data dir>/privacy.key (mode 600) on first use.

    A key named by REMEDY_PRIVACY_KEY_FILE is never generated: the settings already refused a
    missing one. Several processes must share one key (a k8s Secret), or pseudonyms differ.
    """
    if settings.privacy_key:
        return settings
    path = settings.privacy_key_path
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(GENERATED_KEY_BYTES)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    except FileExistsError:
        key = path.read_text(encoding="utf-8").strip()  # another process made it meanwhile
    else:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(key + "\n")
    if not key:
        raise InvariantViolation(f"privacy key {path}: empty file")
    return dataclasses.replace(settings, privacy_key=key.encode("utf-8"))


def erasure_event(customer_id: str, customer_pseudonym: str, erased_at_ms: int) -> dict:
    """The CustomerErased datum for a customer (its event id names the pseudonym, never the id)."""
    return {"event_id": f"erasure/{customer_pseudonym}/{erased_at_ms}", "customer_id": customer_id,
            "pseudonym": customer_pseudonym, "erased_at": erased_at_ms}


def erasure_for(settings: Settings, pseudonyms) -> Erasure:
    """The Erasure that maps erased customers' decisions under this deployment's key; names the
    missing key when customers were erased but this process has none."""
    pseudonyms = frozenset(pseudonyms)
    if pseudonyms and not settings.privacy_key:
        raise InvariantViolation(
            f"{len(pseudonyms)} customer(s) were erased but this process has no privacy key at "
            f"{settings.privacy_key_path}; set REMEDY_PRIVACY_KEY_FILE to the worker's key")
    return Erasure(settings.privacy_key, pseudonyms)
