"""The agency's part of a cancellation (claims 2-3, 11-12, 20-21).

On the shop's cancel request notice the agency decides: an order not yet billed has its
billing stopped; a billed one is credited back, in full and never more than was charged.
The decision is kept with the member's information and the member gets a notice. The
agency sends verification the cancel process notice and answers the shop with the cancel
process result.

- NOTIFIED (claims 2, 11, 20): the decision is applied at once; verification stores the
  notice.
- VERIFIED (claims 3, 12, 21): the decision is reserved (PENDING) until verification has
  checked the order numbers and issued the cancel verification; only then is it applied,
  and the result and verification are compiled for the shop. If verification refuses, the
  reservation is dropped and the order stays as it was.
"""

from __future__ import annotations

import hashlib

from suretynet.settlement.v1 import settlement_pb2
from suretynet.type.v1 import types_pb2
from suretynet.verification.v1 import verification_pb2

from nodes.common.convert import enum_label, enum_value, money, timestamp
from nodes.common.errors import DomainError, ErrorKind, Violations
from nodes.common.identity import EntityIdentity
from nodes.settlement import members, notices, purchases
from storage.common import statements
from storage.common.models import utc_now
from storage.settlement.models import CancellationRow
from storage.settlement.repository import SettlementRepository

FIELD = "cancel_request_notice."
DECISION_STATES = {"STOPPED_BILLING": "BILLING_STOPPED", "CREDITED_BACK": "CREDITED_BACK"}


def validate(request: settlement_pb2.NotifyCancelRequestRequest, caller: EntityIdentity) -> None:
    """Refuses an incomplete notice, or a shop speaking for another shop."""
    notice = request.cancel_request_notice
    violations = Violations()
    violations.require(FIELD + "cancel_request_id", notice.cancel_request_id)
    violations.require(FIELD + "order_number", notice.order_number)
    if notice.procedure == types_pb2.CANCEL_PROCEDURE_UNSPECIFIED:
        violations.add(FIELD + "procedure", "is required")
    if notice.requested_by == types_pb2.CANCEL_REQUESTER_UNSPECIFIED:
        violations.add(FIELD + "requested_by", "is required")
    violations.raise_if_any()
    if (
        notice.retail_entity_id != caller.entity_id
        or request.retail_entity.retail_entity_id != caller.entity_id
    ):
        raise DomainError(
            ErrorKind.PERMISSION_DENIED,
            "NOT_OWNER",
            f"{caller.uri} may cancel only under its own retail entity identification",
        )


def begin(
    repo: SettlementRepository, notice: types_pb2.CancelRequestNotice, caller: EntityIdentity
) -> CancellationRow:
    """Decides (or finds the decision already made for this cancellation).

    Under NOTIFIED the decision is applied in the same transaction; under VERIFIED it is
    reserved until the cancel verification arrives.
    """
    # Locked: the decision (stop or credit back) must not race a billing run.
    order = purchases.get_order(repo, notice.order_number, lock=True)
    if order.retail_entity_id != caller.entity_id:
        raise DomainError(
            ErrorKind.PERMISSION_DENIED,
            "NOT_OWNER",
            f"{caller.uri} did not sell order {notice.order_number}",
            metadata={"order_number": notice.order_number},
        )
    digest = hashlib.sha256(notice.SerializeToString(deterministic=True)).hexdigest()
    existing = statements.find(repo.cancellations, order_number=notice.order_number)
    if existing is not None:
        if existing.cancel_request_id != notice.cancel_request_id:
            if existing.status == "DONE":
                raise DomainError(
                    ErrorKind.FAILED_PRECONDITION,
                    "ORDER_ALREADY_CANCELLED",
                    f"order {notice.order_number} was already cancelled",
                    metadata={"cancel_request_id": existing.cancel_request_id},
                )
            raise DomainError(
                ErrorKind.ABORTED,
                "REQUEST_IN_PROGRESS",
                f"another cancellation of {notice.order_number} is being verified",
            )
        if existing.request_sha256 != digest:
            raise DomainError(
                ErrorKind.INVALID_ARGUMENT,
                "FIELD_INVALID",
                f"{FIELD}cancel_request_id: already used for another notice",
            )
        return existing
    if order.billing_state == "NOT_YET_BILLED":
        decision = "STOPPED_BILLING"
    elif order.billing_state == "BILLED":
        decision = "CREDITED_BACK"
    else:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "ORDER_ALREADY_CANCELLED",
            f"order {notice.order_number} is {order.billing_state.lower()}",
        )
    procedure = enum_label(types_pb2.CancelProcedure, "CANCEL_PROCEDURE_", notice.procedure)
    row: CancellationRow = repo.cancellations.create(
        order_number=order.order_number,
        cancel_request_id=notice.cancel_request_id,
        member_id=order.member_id,
        retail_entity_id=order.retail_entity_id,
        procedure=procedure.upper(),
        requested_by=enum_label(
            types_pb2.CancelRequester, "CANCEL_REQUESTER_", notice.requested_by
        ),
        reason=notice.reason[:500],
        decision=decision,
        # A cancellation stops or credits back exactly what the order charged, never more.
        amount_minor=order.amount_minor,
        currency_code=order.currency_code,
        request_sha256=digest,
        decided_at=utc_now(),
    )
    if row.procedure == "NOTIFIED":
        apply(repo, row, None)
    return row


def apply(
    repo: SettlementRepository,
    row: CancellationRow,
    verification: types_pb2.CancelVerification | None,
) -> None:
    """Applies the decision to the order's billing and tells the member (once)."""
    if row.status == "DONE":
        return
    order = purchases.get_order(repo, row.order_number)
    expected = "NOT_YET_BILLED" if row.decision == "STOPPED_BILLING" else "BILLED"
    assert order.billing_state == expected, "a reserved decision must still fit the order"
    assert 0 < row.amount_minor <= order.amount_minor, "never credit back more than charged"
    members.set_billing_state(repo, order, DECISION_STATES[row.decision])
    order.updated_at = utc_now()
    order.save()
    row.status = "DONE"
    if verification is not None:
        row.verification = verification.SerializeToString(deterministic=True)
    row.save()
    done = "billing stopped" if row.decision == "STOPPED_BILLING" else "credited back"
    notices.add_notice(
        repo,
        member_id=row.member_id,
        kind="CANCELLATION_PROCESSED",
        order_number=row.order_number,
        amount_minor=row.amount_minor,
        currency_code=row.currency_code,
        message=f"Order {row.order_number} cancelled: {row.amount_minor / 100:.2f} "
        f"{row.currency_code} {done}",
        payload=result(row),
    )


def acknowledge(
    repo: SettlementRepository,
    row: CancellationRow,
    verification: types_pb2.CancelVerification | None,
) -> CancellationRow:
    """Verification stored the process notice: apply a reserved decision, mark it sent."""
    current: CancellationRow = repo.cancellations.get_by_id(row.order_number)
    apply(repo, current, verification)
    current.acknowledged_at = current.acknowledged_at or utc_now()
    current.save()
    return current


def abandon(repo: SettlementRepository, row: CancellationRow) -> None:
    """Verification refused: a reserved decision is dropped; the order stays as it was."""
    repo.cancellations.delete().where(
        (repo.cancellations.order_number == row.order_number)
        & (repo.cancellations.status == "PENDING")
    ).execute()


def _decision(row: CancellationRow) -> types_pb2.CancelDecision.ValueType:
    value: types_pb2.CancelDecision.ValueType = enum_value(
        types_pb2.CancelDecision, "CANCEL_DECISION_", row.decision
    )
    return value


def result(row: CancellationRow) -> types_pb2.CancelProcessResult:
    """The cancel process result for the shop (and the member's notice)."""
    return types_pb2.CancelProcessResult(
        cancel_request_id=row.cancel_request_id,
        order_number=row.order_number,
        decision=_decision(row),
        amount=money(row.amount_minor, row.currency_code),
        decided_at=timestamp(row.decided_at),
    )


def process_notice(row: CancellationRow, agency_id: str) -> verification_pb2.CancelProcessNotice:
    """The cancel process notice for verification, with the order number."""
    return verification_pb2.CancelProcessNotice(
        cancel_request_id=row.cancel_request_id,
        order_number=row.order_number,
        settlement_agency_id=agency_id,
        retail_entity_id=row.retail_entity_id,
        decision=_decision(row),
        amount=money(row.amount_minor, row.currency_code),
        decided_at=timestamp(row.decided_at),
    )


def response(row: CancellationRow) -> settlement_pb2.NotifyCancelRequestResponse:
    """The result, compiled with the cancel verification under VERIFIED (claim 3)."""
    answer = settlement_pb2.NotifyCancelRequestResponse(cancel_process_result=result(row))
    if row.verification:
        answer.cancel_verification.ParseFromString(bytes(row.verification))
    return answer
