"""Idempotency by request_id, on an in-memory SQLite store."""

from __future__ import annotations

import pytest
from suretynet.approval.v1 import approval_pb2

from nodes.common.calls import CallInfo
from nodes.common.errors import DomainError, ErrorKind
from nodes.common.idempotency import run_once
from storage.common.database import Store, bind, open_database
from storage.common.models import IdempotencyRecord


@pytest.fixture
def records():
    store = Store(open_database("sqlite:///:memory:"))
    table = bind(store.database, IdempotencyRecord)
    store.create_tables([table])
    yield store, table
    store.close()


def test_the_same_request_twice_has_one_effect_and_one_answer(records):
    store, table = records
    effects: list[int] = []

    def effect() -> approval_pb2.IssueProgramSerialResponse:
        effects.append(1)
        return approval_pb2.IssueProgramSerialResponse(
            program_serial=approval_pb2.ProgramSerial(serial=f"S{len(effects)}")
        )

    request = approval_pb2.IssueProgramSerialRequest(request_id="r1", note="n")

    def once(scope: str, body=request):
        return store.transaction(
            lambda: run_once(
                table,
                scope=scope,
                method="/m",
                request=body,
                response_type=approval_pb2.IssueProgramSerialResponse,
                effect=effect,
            )
        )

    first, second = once("a"), once("a")
    assert first == second and first.program_serial.serial == "S1"
    assert len(effects) == 1
    # Another caller with the same ID is a different key, not a replay.
    assert once("b").program_serial.serial == "S2"
    with pytest.raises(DomainError) as reused:
        once("a", approval_pb2.IssueProgramSerialRequest(request_id="r1", note="other"))
    assert reused.value.reason == "IDEMPOTENCY_KEY_REUSED"
    assert len(effects) == 2


def test_a_failed_effect_leaves_no_key_behind(records):
    """The key is stored with the effect: when the effect fails, a retry runs it again."""
    store, table = records
    request = approval_pb2.IssueProgramSerialRequest(request_id="r2")

    def failing() -> approval_pb2.IssueProgramSerialResponse:
        raise DomainError(ErrorKind.FAILED_PRECONDITION, "FIELD_INVALID", "refused")

    with pytest.raises(DomainError):
        store.transaction(
            lambda: run_once(
                table,
                scope="a",
                method="/m",
                request=request,
                response_type=approval_pb2.IssueProgramSerialResponse,
                effect=failing,
            )
        )
    assert store.transaction(lambda: table.select().count()) == 0


def test_member_callers_must_name_their_own_scope():
    """Members have no certificate; a shared default scope would let their IDs collide."""
    member_call = CallInfo(method="/x.Y/Z", peer_ip=None, caller=None)
    with pytest.raises(RuntimeError, match="explicit idempotency scope"):
        _ = member_call.scope


def test_certificate_caller_is_the_certificate_holder_and_refuses_a_member():
    """Node-only RPCs read their caller once, here; a member there is a policy bug."""
    from nodes.common.calls import certificate_caller, current_call
    from nodes.common.identity import EntityIdentity

    shop = EntityIdentity("retail", "shop-1")
    token = current_call.set(CallInfo(method="/x.Y/Z", peer_ip=None, caller=shop))
    try:
        assert certificate_caller() == shop
        current_call.set(CallInfo(method="/x.Y/Z", peer_ip=None, caller=None))
        with pytest.raises(RuntimeError, match="open to members"):
            certificate_caller()
    finally:
        current_call.reset(token)
