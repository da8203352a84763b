"""Verification's part of a cancellation (claims 2-3, 11-12, 20-21).

It stores the shop's cancel request notice and the settlement agency's cancel process
notice. Under the VERIFIED procedure (claims 3, 12, 21) it first checks that the process
notice's order number is the request notice's, and only then issues a cancel verification;
a mismatch is refused with CANCEL_ORDER_NUMBER_MISMATCH and nothing is stored.
Each party may act only on orders it is party to, as the transaction report shows.
"""

from __future__ import annotations

import secrets

from suretynet.type.v1 import types_pb2
from suretynet.verification.v1 import verification_pb2

from nodes.common.convert import enum_label, timestamp
from nodes.common.errors import DomainError, ErrorKind, Violations
from nodes.common.identity import EntityIdentity
from nodes.verification import audit, reports
from storage.common import statements
from storage.common.models import utc_now
from storage.verification.models import CancelProcessRow, CancelRequestRow
from storage.verification.repository import VerificationRepository


def _not_owner(caller: EntityIdentity, order_number: str, named: str = "") -> DomainError:
    return DomainError(
        ErrorKind.PERMISSION_DENIED,
        "NOT_OWNER",
        f"{caller.uri} is not party to order {order_number}",
        metadata={"order_number": order_number, "named_entity_id": named},
    )


def _order_of(repo: VerificationRepository, order_number: str) -> tuple[str, str]:
    """(shop, agency) of an order, from its transaction report; ORDER_NOT_FOUND without one."""
    try:
        row = reports.get_report(repo, order_number)
    except DomainError:
        raise DomainError(
            ErrorKind.NOT_FOUND, "ORDER_NOT_FOUND", f"no transaction for order {order_number!r}"
        ) from None
    return row.retail_entity_id, row.settlement_agency_id


def store_request(
    repo: VerificationRepository, notice: types_pb2.CancelRequestNotice, caller: EntityIdentity
) -> CancelRequestRow:
    """Stores a shop's cancel request notice for one of its own orders."""
    violations = Violations()
    violations.require("cancel_request_notice.cancel_request_id", notice.cancel_request_id)
    violations.require("cancel_request_notice.order_number", notice.order_number)
    if notice.procedure == types_pb2.CANCEL_PROCEDURE_UNSPECIFIED:
        violations.add("cancel_request_notice.procedure", "is required")
    violations.raise_if_any()
    shop, agency = _order_of(repo, notice.order_number)
    if caller.entity_id != shop or notice.retail_entity_id != shop:
        raise _not_owner(caller, notice.order_number, notice.retail_entity_id)
    if notice.settlement_agency_id != agency:
        raise DomainError(
            ErrorKind.INVALID_ARGUMENT,
            "FIELD_INVALID",
            "cancel_request_notice.settlement_agency_id: not the agency that billed the order",
        )
    serialized = notice.SerializeToString(deterministic=True)
    existing = statements.find(repo.cancel_requests, cancel_request_id=notice.cancel_request_id)
    if existing is not None:
        if bytes(existing.notice) != serialized:
            raise DomainError(
                ErrorKind.INVALID_ARGUMENT,
                "FIELD_INVALID",
                "cancel_request_notice.cancel_request_id: already used for another notice",
            )
        return existing
    row: CancelRequestRow = repo.cancel_requests.create(
        cancel_request_id=notice.cancel_request_id,
        order_number=notice.order_number,
        retail_entity_id=shop,
        settlement_agency_id=agency,
        procedure=enum_label(
            types_pb2.CancelProcedure, "CANCEL_PROCEDURE_", notice.procedure
        ).upper(),
        notice=serialized,
        received_at=utc_now(),
    )
    audit.chain_cancel_request(repo, row)
    return row


def store_process(
    repo: VerificationRepository,
    notice: verification_pb2.CancelProcessNotice,
    caller: EntityIdentity,
) -> tuple[CancelProcessRow, CancelRequestRow]:
    """Stores a cancel process notice; under VERIFIED, checks it and issues the verification."""
    violations = Violations()
    violations.require("cancel_process_notice.cancel_request_id", notice.cancel_request_id)
    violations.require("cancel_process_notice.order_number", notice.order_number)
    if notice.decision == types_pb2.CANCEL_DECISION_UNSPECIFIED:
        violations.add("cancel_process_notice.decision", "is required")
    if notice.amount.amount_minor < 0:
        violations.add("cancel_process_notice.amount.amount_minor", "must not be negative")
    violations.raise_if_any()
    _, agency = _order_of(repo, notice.order_number)
    if caller.entity_id != agency or notice.settlement_agency_id != agency:
        raise _not_owner(caller, notice.order_number)
    request = statements.find(repo.cancel_requests, cancel_request_id=notice.cancel_request_id)
    if request is None:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "CANCEL_REQUEST_NOT_FOUND",
            f"no cancel request notice {notice.cancel_request_id!r}; the shop sends it first",
        )
    if request.procedure == "VERIFIED" and request.order_number != notice.order_number:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "CANCEL_ORDER_NUMBER_MISMATCH",
            f"the cancel process notice names order {notice.order_number}, the cancel request "
            f"notice {request.order_number}",
            metadata={
                "cancel_request_id": notice.cancel_request_id,
                "request_order_number": request.order_number,
                "process_order_number": notice.order_number,
            },
        )
    existing = statements.find(repo.cancel_processes, cancel_request_id=notice.cancel_request_id)
    if existing is not None:
        return existing, request
    verification = None
    if request.procedure == "VERIFIED":
        verification = types_pb2.CancelVerification(
            cancel_verification_id="cv-" + secrets.token_hex(8),
            cancel_request_id=notice.cancel_request_id,
            order_number=notice.order_number,
            decision=notice.decision,
            amount=notice.amount,
            verified_at=timestamp(utc_now()),
        )
    row: CancelProcessRow = repo.cancel_processes.create(
        cancel_request_id=notice.cancel_request_id,
        order_number=notice.order_number,
        settlement_agency_id=agency,
        decision=enum_label(types_pb2.CancelDecision, "CANCEL_DECISION_", notice.decision).upper(),
        amount_minor=notice.amount.amount_minor,
        currency_code=notice.amount.currency_code,
        notice=notice.SerializeToString(deterministic=True),
        verification=verification.SerializeToString(deterministic=True) if verification else None,
        received_at=utc_now(),
    )
    audit.chain_cancel_process(repo, row)
    return row, request


def process_response(
    row: CancelProcessRow, request: CancelRequestRow
) -> verification_pb2.SubmitCancelProcessNoticeResponse:
    response = verification_pb2.SubmitCancelProcessNoticeResponse(
        cancel_process_notice=verification_pb2.CancelProcessNotice.FromString(bytes(row.notice)),
        received_at=timestamp(row.received_at),
        procedure=types_pb2.CancelRequestNotice.FromString(bytes(request.notice)).procedure,
    )
    if row.verification:
        response.cancel_verification.ParseFromString(bytes(row.verification))
    return response


def cancellation_record(
    repo: VerificationRepository, order_number: str, cancel_request_id: str, caller: EntityIdentity
) -> verification_pb2.CancellationRecord:
    """Everything held about an order's cancellation: the processed one, else the latest."""
    shop, agency = _order_of(repo, order_number)
    if caller.role in ("retail", "settlement") and caller.entity_id not in (shop, agency):
        raise _not_owner(caller, order_number)
    requests = repo.cancel_requests
    query = requests.select().where(requests.order_number == order_number)
    if cancel_request_id:
        query = query.where(requests.cancel_request_id == cancel_request_id)
    candidates = list(query.order_by(requests.received_at.desc()))
    processes = {
        row.cancel_request_id: row
        for row in repo.cancel_processes.select().where(
            repo.cancel_processes.order_number == order_number
        )
    }
    chosen = next((row for row in candidates if row.cancel_request_id in processes), None)
    chosen = chosen or (candidates[0] if candidates else None)
    record = verification_pb2.CancellationRecord(order_number=order_number)
    if chosen is None:
        return record
    record.cancel_request_notice.ParseFromString(bytes(chosen.notice))
    record.cancel_request_received_at.FromDatetime(chosen.received_at)
    process = processes.get(chosen.cancel_request_id)
    if process is not None:
        record.cancel_process_notice.ParseFromString(bytes(process.notice))
        record.cancel_process_received_at.FromDatetime(process.received_at)
        if process.verification:
            record.cancel_verification.ParseFromString(bytes(process.verification))
    return record
