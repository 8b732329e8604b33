"""The error hierarchy: one root, then decode errors, invariant violations and transient errors."""


class RemedyLedgerError(Exception):
    """Root of every error Remedy Ledger raises on purpose."""


class DecodeError(RemedyLedgerError):
    """Bytes that are not a valid event: bad header, unknown schema, truncated or garbage body."""


class InvariantViolation(RemedyLedgerError):
    """Input that decodes but breaks a precondition (a negative amount, a missing id)."""


class EncodeError(InvariantViolation):
    """A datum that does not fit its Avro schema; names the record and the field."""


class ValidationError(InvariantViolation):
    """One or more bad input lines; each problem names its line and field."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class PolicyError(InvariantViolation):
    """A policy whose thresholds are missing, of the wrong type or contradict each other."""


class TransientError(RemedyLedgerError):
    """A dependency (broker, database) is unavailable; retried with a bound, never dead-lettered."""


class AccessRefused(RemedyLedgerError):
    """A dependency refused these credentials or this operation (a wrong password, no ACL or role
    allows it); not retried: waiting does not change who the client is."""
