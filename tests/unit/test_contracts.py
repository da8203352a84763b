"""Project-wide contracts that are cheap to check statically."""

from __future__ import annotations

import re
from pathlib import Path

from suretynet.type.v1 import types_pb2

ROOT = Path(__file__).resolve().parents[2]
REASON_LITERAL = re.compile(r'"([A-Z][A-Z0-9_]{3,})"')
REASON_CONTEXT = re.compile(r"(DomainError\(|reason=|_unauthenticated\(|ErrorKind\.)")


def documented_reasons() -> set[str]:
    return {
        name.removeprefix("ERROR_REASON_")
        for name in types_pb2.ErrorReason.keys()  # noqa: SIM118 - protobuf enum wrapper
        if name != "ERROR_REASON_UNSPECIFIED"
    }


def test_every_reason_code_the_nodes_raise_is_documented_in_the_error_reason_enum():
    """An operator can look every refusal up with `grpcurl describe ...ErrorReason`."""
    used: dict[str, str] = {}
    for path in [*(ROOT / "nodes").rglob("*.py"), *(ROOT / "storage").rglob("*.py")]:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            window = "\n".join(lines[max(0, number - 3) : number + 1])
            if not REASON_CONTEXT.search(window):
                continue
            for reason in REASON_LITERAL.findall(line):
                if reason in {
                    kind
                    for kind in (
                        "INVALID_ARGUMENT",
                        "NOT_FOUND",
                        "ALREADY_EXISTS",
                        "FAILED_PRECONDITION",
                        "PERMISSION_DENIED",
                        "UNAUTHENTICATED",
                        "RESOURCE_EXHAUSTED",
                        "ABORTED",
                        "UNAVAILABLE",
                        "DEADLINE_EXCEEDED",
                        "UNIMPLEMENTED",
                        "ACTIVE",
                        "SUSPENDED",
                        "TERMINATED",
                        "REVOKED",
                        "EXPIRED",
                        "GRACE",
                    )
                }:
                    continue
                used.setdefault(reason, f"{path.relative_to(ROOT)}:{number + 1}")
    missing = {
        reason: where for reason, where in used.items() if reason not in documented_reasons()
    }
    assert used, "the scan found the reasons raised in nodes/"
    assert missing == {}


def test_money_is_never_a_float_in_the_protocol():
    """Every amount on the wire is integer minor units (Money), never float or double."""
    protos = list((ROOT / "protos").rglob("*.proto"))
    assert protos
    offenders = [
        f"{path.name}: {line.strip()}"
        for path in protos
        for line in path.read_text().splitlines()
        if re.match(r"\s*(repeated\s+)?(float|double)\s", line)
    ]
    assert offenders == []
