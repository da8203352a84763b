"""Domain errors: what went wrong, in words the use cases own.

Use cases raise DomainError; only the transport edge (nodes/common/status.py) turns it into
a gRPC status. The ``reason`` is a stable code documented in suretynet.type.v1.ErrorReason.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ErrorKind(enum.Enum):
    """The class of failure; each maps to exactly one gRPC status code at the edge."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    ABORTED = "ABORTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNIMPLEMENTED = "UNIMPLEMENTED"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: its path (``order.lines[0].quantity``) and why."""

    field: str
    description: str


@dataclass
class DomainError(Exception):
    """A refusal the caller can act on: kind, stable reason code, message, and details."""

    kind: ErrorKind
    reason: str
    message: str
    violations: list[FieldViolation] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.kind.value} {self.reason}: {self.message}"


def invalid(field_path: str, description: str, *, reason: str = "FIELD_INVALID") -> DomainError:
    """An INVALID_ARGUMENT naming the one field at fault."""
    return DomainError(
        ErrorKind.INVALID_ARGUMENT,
        reason,
        f"{field_path}: {description}",
        violations=[FieldViolation(field_path, description)],
    )


def required(field_path: str) -> DomainError:
    """An INVALID_ARGUMENT for a missing required field."""
    return invalid(field_path, "is required", reason="FIELD_REQUIRED")


class Violations:
    """Collects every bad field of a request so that the caller learns them all at once."""

    def __init__(self) -> None:
        self._items: list[FieldViolation] = []

    def add(self, field_path: str, description: str) -> None:
        self._items.append(FieldViolation(field_path, description))

    def require(self, field_path: str, value: object) -> None:
        if value in ("", None, 0) or value == []:
            self.add(field_path, "is required")

    def raise_if_any(self) -> None:
        if not self._items:
            return
        reason = (
            "FIELD_REQUIRED"
            if all(item.description == "is required" for item in self._items)
            else "FIELD_INVALID"
        )
        summary = "; ".join(f"{item.field}: {item.description}" for item in self._items)
        raise DomainError(ErrorKind.INVALID_ARGUMENT, reason, summary, violations=self._items)
