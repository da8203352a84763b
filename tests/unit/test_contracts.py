"""Project-wide contracts that are cheap to check statically."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from suretynet.type.v1 import types_pb2

ROOT = Path(__file__).resolve().parents[2]
# Helpers that take the reason as their first argument, besides DomainError's second.
REASON_FIRST_HELPERS = {"_unauthenticated"}
# Callables whose ``reason=`` keyword is an error reason (request messages have other ones).
REASON_KEYWORD = {"DomainError", "invalid"}


def documented_reasons() -> set[str]:
    return {
        name.removeprefix("ERROR_REASON_")
        for name in types_pb2.ErrorReason.keys()  # noqa: SIM118 - protobuf enum wrapper
        if name != "ERROR_REASON_UNSPECIFIED"
    }


def raised_reasons() -> dict[str, str]:
    """Every literal reason passed to DomainError (2nd argument or reason=) in the nodes."""
    found: dict[str, str] = {}
    for path in [*(ROOT / "nodes").rglob("*.py"), *(ROOT / "storage").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            candidates: list[ast.expr] = [
                kw.value for kw in node.keywords if kw.arg == "reason" and name in REASON_KEYWORD
            ]
            if name == "DomainError" and len(node.args) >= 2:
                candidates.append(node.args[1])
            if name in REASON_FIRST_HELPERS and node.args:
                candidates.append(node.args[0])
            for candidate in candidates:
                if isinstance(candidate, ast.Constant) and isinstance(candidate.value, str):
                    found.setdefault(candidate.value, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_reason_code_the_nodes_raise_is_documented_in_the_error_reason_enum():
    """An operator can look every refusal up with `grpcurl describe ...ErrorReason`."""
    used = raised_reasons()
    missing = {
        reason: where for reason, where in used.items() if reason not in documented_reasons()
    }
    assert "LICENSE_KEY_REVOKED" in used, "the scan finds the reasons raised in nodes/"
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
