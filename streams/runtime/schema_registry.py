"""The schema registry of registry mode: a client of the Confluent-compatible REST API.

Apicurio Registry serves that API under `/apis/ccompat/v7` (deploy/local/registry.sh), Confluent
Schema Registry at its root; REMEDY_SCHEMA_REGISTRY_URL is that API's URL either way, the same URL
Confluent's serializers in any language take. Subjects follow RecordNameStrategy: a record's
schemas are registered under its full name (`remedy_ledger.v1.RemedyRequested`) whatever topic
carries it (schemas/README.md says why), each subject with compatibility FULL_TRANSITIVE.

The codec (schemas/_codec.py) asks this client for an id once per record and a schema once per
id; nothing here runs per message.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

import schemas
from streams.errors import AccessRefused, DecodeError, InvariantViolation, RemedyLedgerError, TransientError
from streams.runtime.settings import Settings

# The Content-Type the Confluent API speaks (Apicurio's ccompat API takes plain JSON too).
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# Every subject of the project: old readers read new data and new readers read old data, across
# every revision ever registered (the event log is read years later; schemas/README.md).
COMPATIBILITY = "FULL_TRANSITIVE"
# One request to a registry on loopback or in the same network answers in milliseconds;
# after 10 s it is not answering.
REQUEST_TIMEOUT_S = 10
# Attempts of one request while the registry is unreachable or answers 5xx, RETRY_PAUSE_S apart:
# Apicurio restarts in 2-19 s here, so 10 attempts over about 20 s ride out a restart; past that
# the caller gets a TransientError (a worker crashes loudly; it never dead-letters for it).
REQUEST_ATTEMPTS_MAX = 10
RETRY_PAUSE_S = 2.0
# A registry's error message is quoted in ours up to this length.
ERROR_TEXT_CHARS_MAX = 500
# Confluent's error codes for "no such subject" and "no such version/schema under it".
_NOT_FOUND_CODES = (40401, 40402, 40403)


class IncompatibleSchema(InvariantViolation):
    """The registry refused a schema as incompatible with the subject's earlier versions."""


@dataclass(frozen=True)
class _Answer:
    status: int
    body: Any


class HttpSchemaRegistry:
    """A schema registry's Confluent-compatible API over HTTP (urllib: no dependency to add)."""

    def __init__(self, url: str, timeout_s: float = REQUEST_TIMEOUT_S, attempts_max: int = REQUEST_ATTEMPTS_MAX,
                 retry_pause_s: float = RETRY_PAUSE_S, sleep: Callable[[float], None] = time.sleep):
        self.url = url.rstrip("/")
        self._timeout_s = timeout_s
        self._attempts_max = attempts_max
        self._retry_pause_s = retry_pause_s
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"HttpSchemaRegistry({self.url!r})"

    def schema_by_id(self, schema_id: int) -> str | None:
        """The Avro schema text registered under an id; None if the registry has no such id."""
        answer = self._request("GET", f"/schemas/ids/{int(schema_id)}")
        if answer.status == 404:
            return None
        # Any other refusal says nothing about the record: the reader stops rather than
        # dead-lettering every registry-framed record it meets.
        self._check(answer, f"reading schema id {schema_id}", TransientError)
        schema_type = answer.body.get("schemaType", "AVRO") if isinstance(answer.body, dict) else None
        if schema_type != "AVRO" or not isinstance(answer.body.get("schema"), str):
            raise DecodeError(f"is a {schema_type or 'malformed'} schema, not Avro")
        if answer.body.get("references"):
            raise DecodeError("uses schema references, which this reader does not resolve; "
                              "register self-contained schemas (python -m schemas register does)")
        return answer.body["schema"]

    def lookup(self, subject: str, schema_text: str) -> int | None:
        """The id of this exact schema under a subject, or None if it is not registered there."""
        answer = self._request("POST", f"/subjects/{_quoted(subject)}", {"schema": schema_text})
        if answer.status == 404:
            return None
        self._check(answer, f"looking up {subject}")
        return _schema_id(answer.body, self.url)

    def register(self, subject: str, schema_text: str) -> int:
        """Register a schema under a subject (a no-op returning its id if it is there); its id.

        Raise IncompatibleSchema when the subject's compatibility check refuses it.
        """
        answer = self._request("POST", f"/subjects/{_quoted(subject)}/versions", {"schema": schema_text})
        if answer.status == 409:
            raise IncompatibleSchema(f"the schema registry {self.url} refused the schema as incompatible with "
                                     f"subject {subject}'s earlier versions: {_message(answer.body)}")
        self._check(answer, f"registering a schema under {subject}")
        return _schema_id(answer.body, self.url)

    def set_compatibility(self, subject: str, level: str = COMPATIBILITY) -> None:
        """Set a subject's compatibility level (also before its first version)."""
        answer = self._request("PUT", f"/config/{_quoted(subject)}", {"compatibility": level})
        self._check(answer, f"setting the compatibility of {subject} to {level}")

    def compatibility(self, subject: str) -> str | None:
        """A subject's own compatibility level, or None when it has none (the global one applies)."""
        answer = self._request("GET", f"/config/{_quoted(subject)}")
        if answer.status == 404:
            return None
        self._check(answer, f"reading the compatibility of {subject}")
        return answer.body.get("compatibilityLevel") or answer.body.get("compatibility")

    def versions(self, subject: str) -> list[int]:
        """The version numbers registered under a subject (empty when the subject does not exist)."""
        answer = self._request("GET", f"/subjects/{_quoted(subject)}/versions")
        if answer.status == 404:
            return []
        self._check(answer, f"listing the versions of {subject}")
        return list(answer.body)

    def schema_id(self, subject: str, schema_text: str) -> int:
        """The id of a schema under a subject; a new one is registered, a new subject made FULL_TRANSITIVE first."""
        found = self.lookup(subject, schema_text)
        if found is not None:
            return found
        if not self.versions(subject):
            self.set_compatibility(subject)
        return self.register(subject, schema_text)

    def _check(self, answer: _Answer, doing: str,
               error_type: type[RemedyLedgerError] = InvariantViolation) -> None:
        if 200 <= answer.status < 300:
            return
        problem = f"the schema registry {self.url} answered HTTP {answer.status} {doing}: {_message(answer.body)}"
        raise (AccessRefused if answer.status in (401, 403) else error_type)(problem)

    def _request(self, method: str, path: str, document: dict | None = None) -> _Answer:
        """One API call; connection failures and 5xx are retried (bounded), then TransientError."""
        data = json.dumps(document).encode() if document is not None else None
        headers = {"Accept": CONTENT_TYPE, **({"Content-Type": CONTENT_TYPE} if data is not None else {})}
        last_problem = ""
        for attempt in range(1, self._attempts_max + 1):
            request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                    return _Answer(response.status, _json(response.read()))
            except urllib.error.HTTPError as error:
                answer = _Answer(error.code, _json(error.read()))
                if error.code < 500:
                    return answer
                last_problem = f"HTTP {error.code}: {_message(answer.body)}"
            except (urllib.error.URLError, OSError) as error:  # refused, reset, timed out
                last_problem = str(getattr(error, "reason", error))
            if attempt < self._attempts_max:
                self._sleep(self._retry_pause_s)
        raise TransientError(f"the schema registry {self.url} is unavailable ({method} {path}, "
                             f"{self._attempts_max} attempts): {last_problem}")


def _quoted(subject: str) -> str:
    return urllib.parse.quote(subject, safe="")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw[:ERROR_TEXT_CHARS_MAX].decode("utf-8", "replace")


def _message(body: Any) -> str:
    text = body.get("message", json.dumps(body)) if isinstance(body, dict) else str(body)
    return text if len(text) <= ERROR_TEXT_CHARS_MAX else text[:ERROR_TEXT_CHARS_MAX] + "..."


def _schema_id(body: Any, url: str) -> int:
    schema_id = body.get("id") if isinstance(body, dict) else None
    if not isinstance(schema_id, int) or isinstance(schema_id, bool):
        raise InvariantViolation(f"the schema registry {url} answered without a schema id: {_message(body)}")
    return schema_id


@dataclass(frozen=True)
class Registered:
    """One schema revision as `register_released` left it in the registry."""

    record_name: str
    revision: int
    subject: str
    schema_id: int
    new: bool


def register_released(schema_set: schemas.SchemaSet, registry: HttpSchemaRegistry, subject_prefix: str = "",
                      progress: Callable[[Registered], None] | None = None) -> list[Registered]:
    """Register every revision of every record, oldest first, under FULL_TRANSITIVE subjects.

    In order, so that the registry's own compatibility check runs on each revision against all
    before it. A revision already there is left as it is (its id is looked up), so running this
    again changes nothing. Raise IncompatibleSchema naming the record and revision it refused.
    """
    done: list[Registered] = []
    for name in schema_set.record_names():
        subject = subject_prefix + schema_set.current_record(name).subject
        registry.set_compatibility(subject)
        for version in schema_set.history(name):
            text = version.schema_text()
            schema_id = registry.lookup(subject, text)
            new = schema_id is None
            if new:
                try:
                    schema_id = registry.register(subject, text)
                except IncompatibleSchema as error:
                    raise IncompatibleSchema(f"{name} r{version.revision} ({schema_set.root}): {error}") from None
            entry = Registered(name, version.revision, subject, schema_id, new)
            done.append(entry)
            if progress is not None:
                progress(entry)
    return done


def use_registry(settings: Settings) -> None:
    """Registry mode for this process when REMEDY_SCHEMA_REGISTRY_URL is set, else single objects."""
    url = settings.schema_registry_url
    schemas.use_registry(HttpSchemaRegistry(url) if url else None)
