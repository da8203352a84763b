"""Approval's transaction verification (claim 1, flow step 10) and its record database.

On the shop's transaction verification request, approval compares the request with the
transaction report the settlement agency filed at verification. Only when shop, agency,
order number, amount and result agree does it store the order number and the monies as a
transaction record and answer with a transaction verification. A disagreement is refused
with TRANSACTION_MISMATCH and kept as a mismatch record for the institution to investigate;
it never becomes a transaction record.

The record database is tamper-evident: each record, each later change to it (a
cancellation; a void) and each mismatch appends an entry to the audit chain in the same
transaction (``nodes/common/audit_chain.py``). A later change is appended, never edited into
an earlier entry, so that replaying a record's entries gives its current row.
"""

from __future__ import annotations

import datetime
import secrets
import time
from dataclasses import dataclass
from typing import Any

from suretynet.approval.v1 import approval_pb2
from suretynet.type.v1 import types_pb2
from suretynet.verification.v1 import verification_pb2

from nodes.common import voids
from nodes.common.audit_chain import VOID_TABLE, AuditedTable, chain_void, iso, void_state
from nodes.common.convert import enum_label, enum_value, money, timestamp
from nodes.common.errors import DomainError, ErrorKind, Violations
from nodes.common.identity import EntityIdentity
from storage.approval.models import TransactionMismatchRow, TransactionRecordRow
from storage.approval.repository import ApprovalRepository
from storage.common import statements
from storage.common.models import OrderVoid, utc_now

RECORD_TABLE = "transaction_record"
MISMATCH_TABLE = "transaction_mismatch"


def record_state(row: TransactionRecordRow) -> dict[str, object]:
    """The audited fields of a transaction record, as its row holds them now."""
    return {
        "order_number": row.order_number,
        "retail_entity_id": row.retail_entity_id,
        "settlement_agency_id": row.settlement_agency_id,
        "amount_minor": int(row.amount_minor),
        "currency_code": row.currency_code,
        "transaction_verification_id": row.transaction_verification_id,
        "trace_id": row.trace_id,
        "reported_at": iso(row.reported_at),
        "recorded_at": iso(row.recorded_at),
        **cancellation_state(row),
    }


def cancellation_state(row: TransactionRecordRow) -> dict[str, object]:
    """The fields a confirmed cancellation sets (the TRANSACTION_CANCELLED entry's state)."""
    return {
        "cancelled_at": iso(row.cancelled_at),
        "cancel_request_id": row.cancel_request_id,
        "cancel_decision": row.cancel_decision,
        "cancelled_amount_minor": int(row.cancelled_amount_minor),
    }


def mismatch_state(row: TransactionMismatchRow) -> dict[str, object]:
    """The audited fields of a refused verification request."""
    return {
        "order_number": row.order_number,
        "retail_entity_id": row.retail_entity_id,
        "settlement_agency_id": row.settlement_agency_id,
        "requested_amount_minor": int(row.requested_amount_minor),
        "requested_currency_code": row.requested_currency_code,
        "reported_amount_minor": row.reported_amount_minor,
        "reported_currency_code": row.reported_currency_code,
        "mismatched_fields": row.mismatched_fields,
        "trace_id": row.trace_id,
        "recorded_at": iso(row.recorded_at),
    }


def audited_tables(repo: ApprovalRepository) -> list[AuditedTable]:
    """Approval's audited tables, in the order ListAuditedRecords walks them."""
    return [
        AuditedTable(RECORD_TABLE, repo.transactions, repo.transactions.order_number, record_state),
        AuditedTable(MISMATCH_TABLE, repo.mismatches, repo.mismatches.mismatch_id, mismatch_state),
        AuditedTable(VOID_TABLE, repo.voids, repo.voids.order_number, void_state),
    ]


def validate_request(request: approval_pb2.TransactionVerificationRequest) -> None:
    """Refuses a verification request missing its order number, parties or amount."""
    field = "transaction_verification_request."
    violations = Violations()
    violations.require(field + "order_number", request.order_number)
    violations.require(field + "retail_entity_id", request.retail_entity_id)
    violations.require(field + "settlement_agency_id", request.settlement_agency_id)
    if request.amount.amount_minor <= 0:
        violations.add(field + "amount.amount_minor", "must be positive")
    if len(request.amount.currency_code) != 3:
        violations.add(field + "amount.currency_code", "must be an ISO 4217 code")
    violations.raise_if_any()


def mismatched_fields(
    request: approval_pb2.TransactionVerificationRequest,
    report: verification_pb2.TransactionReport,
) -> list[str]:
    """The fields in which the shop's request and the agency's report disagree."""
    details = report.billing_details
    differences = []
    if report.order_number != request.order_number:
        differences.append("order_number")
    if details.retail_entity_id != request.retail_entity_id:
        differences.append("retail_entity_id")
    if details.settlement_agency_id != request.settlement_agency_id:
        differences.append("settlement_agency_id")
    if (details.amount.amount_minor, details.amount.currency_code) != (
        request.amount.amount_minor,
        request.amount.currency_code,
    ):
        differences.append("amount")
    if report.result != types_pb2.TRANSACTION_RESULT_APPROVED:
        differences.append("result")
    return differences


@dataclass(frozen=True)
class Mismatch:
    """What a refused verification request disagreed on."""

    request: approval_pb2.TransactionVerificationRequest
    reported_amount: types_pb2.Money | None
    fields: list[str]
    trace_id: str


def record_mismatch(repo: ApprovalRepository, mismatch: Mismatch) -> TransactionMismatchRow:
    """Keeps a refused verification request for investigation (no transaction record)."""
    request = mismatch.request
    row: TransactionMismatchRow = repo.mismatches.create(
        # Time-ordered, so that listing newest first is listing by ID.
        mismatch_id=f"{time.time_ns():020d}{secrets.token_hex(4)}",
        order_number=request.order_number,
        retail_entity_id=request.retail_entity_id,
        settlement_agency_id=request.settlement_agency_id,
        requested_amount_minor=request.amount.amount_minor,
        requested_currency_code=request.amount.currency_code,
        reported_amount_minor=mismatch.reported_amount.amount_minor
        if mismatch.reported_amount
        else None,
        reported_currency_code=mismatch.reported_amount.currency_code
        if mismatch.reported_amount
        else "",
        mismatched_fields=",".join(mismatch.fields),
        trace_id=mismatch.trace_id,
        recorded_at=utc_now(),
    )
    repo.audit.append(
        "MISMATCH_RECORDED", f"{MISMATCH_TABLE}/{row.mismatch_id}", mismatch_state(row)
    )
    return row


def mismatch_error(order_number: str, fields: list[str]) -> DomainError:
    return DomainError(
        ErrorKind.FAILED_PRECONDITION,
        "TRANSACTION_MISMATCH",
        f"the verification request for {order_number} differs from the transaction report "
        f"in {', '.join(fields)}",
        metadata={"order_number": order_number, "mismatched_fields": ",".join(fields)},
    )


def record_values(
    request: approval_pb2.TransactionVerificationRequest,
    reported_at: object,
    trace_id: str,
    recorded_at: datetime.datetime,
) -> dict[str, Any]:
    """The columns of a new transaction record (also what ``suretynet bench`` seeds)."""
    return {
        "order_number": request.order_number,
        "retail_entity_id": request.retail_entity_id,
        "settlement_agency_id": request.settlement_agency_id,
        "amount_minor": request.amount.amount_minor,
        "currency_code": request.amount.currency_code,
        "transaction_verification_id": "tv-" + secrets.token_hex(8),
        "trace_id": trace_id,
        "reported_at": reported_at,
        "recorded_at": recorded_at,
    }


def record_transaction(
    repo: ApprovalRepository,
    request: approval_pb2.TransactionVerificationRequest,
    reported_at: object,
    trace_id: str,
) -> TransactionRecordRow:
    """Stores the order number and monies (transaction record database), once per order."""
    existing = statements.find(repo.transactions, order_number=request.order_number)
    if existing is not None:
        return existing
    row: TransactionRecordRow = repo.transactions.create(
        **record_values(request, reported_at, trace_id, utc_now())
    )
    repo.audit.append(
        "TRANSACTION_RECORDED", f"{RECORD_TABLE}/{row.order_number}", record_state(row)
    )
    return row


def check_cancellation(
    row: TransactionRecordRow,
    cancel_request_id: str,
    record: verification_pb2.CancellationRecord,
) -> verification_pb2.CancelProcessNotice:
    """The process notice that cancels the order, once verification's records prove it.

    Verification must hold the settlement agency's cancel process notice for this
    cancellation and, under VERIFIED, the cancel verification; the cancelled amount must be
    the order's currency and never more than the order's amount.
    """
    notice = record.cancel_process_notice
    if (
        not record.HasField("cancel_process_notice")
        or notice.cancel_request_id != cancel_request_id
    ):
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "CANCEL_REQUEST_NOT_FOUND",
            f"verification holds no processed cancellation {cancel_request_id!r} for "
            f"{row.order_number}",
        )
    verified = record.cancel_request_notice.procedure == types_pb2.CANCEL_PROCEDURE_VERIFIED
    if verified and not record.HasField("cancel_verification"):
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "CANCEL_REQUEST_NOT_FOUND",
            f"cancellation {cancel_request_id!r} has no cancel verification yet",
        )
    if (
        notice.amount.currency_code != row.currency_code
        or not 0 <= notice.amount.amount_minor <= row.amount_minor
    ):
        raise mismatch_error(row.order_number, ["cancelled_amount"])
    return notice


def mark_cancelled(
    repo: ApprovalRepository, order_number: str, notice: verification_pb2.CancelProcessNotice
) -> TransactionRecordRow:
    """Marks the transaction record cancelled (once; a repeat changes nothing)."""
    row = get_record(repo, order_number)
    if row.cancelled_at is None:
        row.cancelled_at = utc_now()
        row.cancel_request_id = notice.cancel_request_id
        row.cancel_decision = enum_label(
            types_pb2.CancelDecision, "CANCEL_DECISION_", notice.decision
        ).upper()
        row.cancelled_amount_minor = notice.amount.amount_minor
        row.save()
        repo.audit.append(
            "TRANSACTION_CANCELLED", f"{RECORD_TABLE}/{row.order_number}", cancellation_state(row)
        )
    return row


def record_to_proto(row: TransactionRecordRow) -> approval_pb2.TransactionRecord:
    record = _record_to_proto(row)
    if row.cancelled_at is not None:
        record.cancelled_at.FromDatetime(row.cancelled_at)
        record.cancel_request_id = row.cancel_request_id
        record.cancel_decision = enum_value(
            types_pb2.CancelDecision, "CANCEL_DECISION_", row.cancel_decision
        )
        record.cancelled_amount.CopyFrom(money(row.cancelled_amount_minor, row.currency_code))
    return record


def _record_to_proto(row: TransactionRecordRow) -> approval_pb2.TransactionRecord:
    return approval_pb2.TransactionRecord(
        order_number=row.order_number,
        retail_entity_id=row.retail_entity_id,
        settlement_agency_id=row.settlement_agency_id,
        amount=money(row.amount_minor, row.currency_code),
        transaction_verification_id=row.transaction_verification_id,
        reported_at=timestamp(row.reported_at),
        recorded_at=timestamp(row.recorded_at),
        trace_id=row.trace_id,
    )


def verification_to_proto(row: TransactionRecordRow) -> approval_pb2.TransactionVerification:
    return approval_pb2.TransactionVerification(
        transaction_verification_id=row.transaction_verification_id,
        order_number=row.order_number,
        amount=money(row.amount_minor, row.currency_code),
        verified_at=timestamp(row.recorded_at),
    )


def mismatch_to_proto(row: TransactionMismatchRow) -> approval_pb2.TransactionMismatch:
    mismatch = approval_pb2.TransactionMismatch(
        order_number=row.order_number,
        retail_entity_id=row.retail_entity_id,
        settlement_agency_id=row.settlement_agency_id,
        requested_amount=money(row.requested_amount_minor, row.requested_currency_code),
        mismatched_fields=[name for name in row.mismatched_fields.split(",") if name],
        trace_id=row.trace_id,
        recorded_at=timestamp(row.recorded_at),
    )
    if row.reported_amount_minor is not None:
        mismatch.reported_amount.CopyFrom(
            money(row.reported_amount_minor, row.reported_currency_code)
        )
    return mismatch


def get_record(repo: ApprovalRepository, order_number: str) -> TransactionRecordRow:
    row = statements.find(repo.transactions, order_number=order_number)
    if row is None:
        raise DomainError(
            ErrorKind.NOT_FOUND, "ORDER_NOT_FOUND", f"no transaction record for {order_number!r}"
        )
    return row


def check_not_voided(
    repo: ApprovalRepository, request: approval_pb2.TransactionVerificationRequest
) -> None:
    """ORDER_VOIDED once the shop voided the order: approval never records it after that."""
    if voids.voided(repo.voids, request.order_number, request.retail_entity_id) is not None:
        raise voids.refusal(request.order_number)


def validate_void(
    request: approval_pb2.RecordTransactionVoidRequest, caller: EntityIdentity
) -> voids.Void:
    reason = enum_label(types_pb2.ErrorReason, "ERROR_REASON_", request.reason).upper()
    voids.validate(request.order_number, reason)
    return voids.Void(
        order_number=request.order_number,
        retail_entity_id=caller.entity_id,
        settlement_agency_id=request.settlement_agency_id,
        reason=reason,
    )


def record_void(repo: ApprovalRepository, void: voids.Void) -> OrderVoid:
    """Records the shop's void, unless approval already verified the order (resolve forward)."""
    record = statements.find(repo.transactions, order_number=void.order_number)
    if record is not None and record.retail_entity_id == void.retail_entity_id:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "TRANSACTION_ALREADY_VERIFIED",
            f"order {void.order_number} is verified and recorded; finish it instead",
            metadata={"order_number": void.order_number},
        )
    return chain_void(repo.voids, repo.audit, void)
