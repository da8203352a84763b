"""Verification's transaction reports (claim 1, flow step 9): the independent witness.

The settlement agency files one report per order; approval later checks the shop's
transaction verification request against it (step 10). A report is immutable: filing the
same order again with other content is refused with TRANSACTION_MISMATCH.
"""

from __future__ import annotations

import datetime
from typing import Any

from suretynet.type.v1 import types_pb2
from suretynet.verification.v1 import verification_pb2

from nodes.common import voids
from nodes.common.audit_chain import chain_void
from nodes.common.convert import enum_label
from nodes.common.errors import DomainError, ErrorKind, Violations
from nodes.common.identity import EntityIdentity
from nodes.verification import audit
from storage.common import statements
from storage.common.models import OrderVoid, utc_now
from storage.verification.models import TransactionReportRow
from storage.verification.repository import VerificationRepository


def validate_report(report: verification_pb2.TransactionReport, caller: EntityIdentity) -> None:
    """Refuses an incomplete report, or one filed for another agency than the caller."""
    details = report.billing_details
    violations = Violations()
    violations.require("transaction_report.order_number", report.order_number)
    violations.require(
        "transaction_report.billing_details.retail_entity_id", details.retail_entity_id
    )
    violations.require(
        "transaction_report.billing_details.settlement_agency_id", details.settlement_agency_id
    )
    if details.amount.amount_minor <= 0:
        violations.add("transaction_report.billing_details.amount.amount_minor", "must be positive")
    if len(details.amount.currency_code) != 3:
        violations.add(
            "transaction_report.billing_details.amount.currency_code", "must be an ISO 4217 code"
        )
    if report.result == types_pb2.TRANSACTION_RESULT_UNSPECIFIED:
        violations.add("transaction_report.result", "is required")
    violations.raise_if_any()
    if caller.role == "settlement" and details.settlement_agency_id != caller.entity_id:
        raise DomainError(
            ErrorKind.PERMISSION_DENIED,
            "NOT_OWNER",
            f"{caller.uri} may report only its own transactions",
        )


def store_report(
    repo: VerificationRepository, report: verification_pb2.TransactionReport, trace_id: str
) -> TransactionReportRow:
    """Stores the report once; the same order again must carry the same content."""
    serialized = report.SerializeToString(deterministic=True)
    existing = statements.find(repo.reports, order_number=report.order_number)
    if existing is not None:
        if bytes(existing.report) != serialized:
            raise DomainError(
                ErrorKind.FAILED_PRECONDITION,
                "TRANSACTION_MISMATCH",
                f"a different transaction report for {report.order_number} is already on file",
                metadata={"order_number": report.order_number},
            )
        return existing
    row: TransactionReportRow = repo.reports.create(**report_values(report, trace_id, utc_now()))
    audit.chain_report(repo, row)
    return row


def report_values(
    report: verification_pb2.TransactionReport, trace_id: str, received_at: datetime.datetime
) -> dict[str, Any]:
    """The columns of a received report's row (also what ``suretynet bench`` seeds)."""
    details = report.billing_details
    return {
        "order_number": report.order_number,
        "settlement_agency_id": details.settlement_agency_id,
        "retail_entity_id": details.retail_entity_id,
        "amount_minor": details.amount.amount_minor,
        "currency_code": details.amount.currency_code,
        "result": enum_label(
            types_pb2.TransactionResult, "TRANSACTION_RESULT_", report.result
        ).upper(),
        "report": report.SerializeToString(deterministic=True),
        "trace_id": trace_id,
        "received_at": received_at,
    }


def get_report(repo: VerificationRepository, order_number: str) -> TransactionReportRow:
    row = statements.find(repo.reports, order_number=order_number)
    if row is None:
        raise DomainError(
            ErrorKind.NOT_FOUND,
            "TRANSACTION_REPORT_NOT_FOUND",
            f"verification holds no transaction report for {order_number!r}",
        )
    return row


def get_report_and_void(
    repo: VerificationRepository, order_number: str
) -> tuple[TransactionReportRow, OrderVoid | None]:
    """The report and, if the agency voided the order, its void."""
    row = get_report(repo, order_number)
    return row, voids.voided(repo.voids, order_number, row.retail_entity_id)


def validate_void(
    request: verification_pb2.VoidTransactionReportRequest, caller: EntityIdentity
) -> voids.Void:
    """Refuses an incomplete void, or one sent by another agency than the one it names."""
    reason = enum_label(types_pb2.ErrorReason, "ERROR_REASON_", request.reason).upper()
    voids.validate(request.order_number, reason)
    violations = Violations()
    violations.require("retail_entity_id", request.retail_entity_id)
    violations.require("settlement_agency_id", request.settlement_agency_id)
    violations.raise_if_any()
    if request.settlement_agency_id != caller.entity_id:
        raise DomainError(
            ErrorKind.PERMISSION_DENIED,
            "NOT_OWNER",
            f"{caller.uri} may void only its own orders",
        )
    return voids.Void(
        order_number=request.order_number,
        retail_entity_id=request.retail_entity_id,
        settlement_agency_id=request.settlement_agency_id,
        reason=reason,
    )


def void_report(repo: VerificationRepository, void: voids.Void) -> tuple[OrderVoid, bool]:
    """Records the agency's void; returns it and whether a report was on file."""
    report = statements.find(repo.reports, order_number=void.order_number)
    if report is not None and report.settlement_agency_id != void.settlement_agency_id:
        raise DomainError(
            ErrorKind.PERMISSION_DENIED,
            "NOT_OWNER",
            f"order {void.order_number} was reported by another settlement agency",
        )
    return chain_void(repo.voids, repo.audit, void), report is not None
