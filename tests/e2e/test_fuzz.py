"""Hostile input against a real local network: bad bodies, undefined enums, forged pushes,
replays, and the descriptor-driven fuzz suite (nodes/network/fuzz.py) over every RPC."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from suretynet.approval.v1 import approval_pb2
from suretynet.marketplace.v1 import marketplace_pb2
from suretynet.retail.v1 import retail_pb2
from suretynet.settlement.v1 import settlement_pb2
from suretynet.type.v1 import types_pb2

from nodes.common.status import RemoteError, decode_rpc_error
from nodes.network.fuzz import Network, Snapshots, call, changed_tables, run_fuzz, targets
from nodes.network.local import LocalNetwork

# The CI sample: at least 2,000 requests over every RPC of every node, in about a minute.
CI_EXAMPLES_PER_RPC = 14


@pytest.fixture(scope="module")
def harness_network(network: LocalNetwork):
    view = Network(network.data_dir / "network.json")
    yield view
    view.close()


def target(view: Network, entity: str, method: str):
    return next(t for t in targets(view) if t.entity_id == entity and t.method.endswith(method))


def send(view: Network, entity: str, method: str, request: Message) -> Message | RemoteError:
    """Sends ``request`` with the credential the RPC's policy admits; returns the answer."""
    chosen = target(view, entity, method)
    channel, metadata = view.route(chosen)
    output = chosen.descriptor.output_type
    from google.protobuf import message_factory

    rpc = channel.unary_unary(
        chosen.method,
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=message_factory.GetMessageClass(output).FromString,
    )
    try:
        answer: Message = rpc(request, metadata=tuple(metadata), timeout=20)
        return answer
    except grpc.RpcError as error:
        return decode_rpc_error(error)


def error_lines(network: LocalNetwork) -> int:
    return sum(
        1
        for log in (network.data_dir / "logs").glob("*.log")
        for line in log.read_text().splitlines()
        if '"level":"ERROR"' in line
    )


def test_an_undecodable_body_is_invalid_argument_on_every_rpc_and_logs_no_error(
    network: LocalNetwork, harness_network: Network
):
    """Every RPC of every node (with the credential it admits) answers a body that does not
    parse with INVALID_ARGUMENT / REQUEST_UNDECODABLE, never UNKNOWN, and logs no ERROR."""
    errors_before = error_lines(network)
    answers: dict[str, tuple[str, str]] = {}
    for chosen in targets(harness_network):
        answer = call(harness_network.route(chosen), chosen, b"\x0a\xff\xff\xff\x0f")
        answers[f"{chosen.entity_id}{chosen.method}"] = (answer.code, answer.reason)
    assert len(answers) >= 89
    wrong = {
        key: value
        for key, value in answers.items()
        if value != ("INVALID_ARGUMENT", "REQUEST_UNDECODABLE")
    }
    assert wrong == {}
    assert error_lines(network) == errors_before


def test_an_undefined_enum_number_is_invalid_argument_naming_the_field(
    harness_network: Network,
):
    """ReplyToEstimate (open to any logged-in purchaser) and the other enum-bearing RPCs
    refuse an enum number the protocol does not define, naming the field."""
    cases: list[tuple[str, str, Message, str]] = [
        (
            "market-1",
            "/ReplyToEstimate",
            marketplace_pb2.ReplyToEstimateRequest(
                request_id="enum-1", transaction_id="TX-1", estimate_id="E-1", decision=99
            ),
            "decision",
        ),
        (
            "market-1",
            "/ShipOrder",
            marketplace_pb2.ShipOrderRequest(request_id="enum-2", transaction_id="T", status=77),
            "status",
        ),
        (
            "institution",
            "/IssueProgramSerial",
            approval_pb2.IssueProgramSerialRequest(request_id="enum-3", role=42),
            "role",
        ),
        (
            "market-1",
            "/SetCreditStandards",
            marketplace_pb2.SetCreditStandardsRequest(
                request_id="enum-4",
                standards=[marketplace_pb2.CreditStandard(item=9, max_count=1, window_days=9)],
                threshold_points=1,
            ),
            "standards[0].item",
        ),
    ]
    for entity, method, request, field in cases:
        answer = send(harness_network, entity, method, request)
        assert isinstance(answer, RemoteError), method
        assert answer.code == grpc.StatusCode.INVALID_ARGUMENT, (method, answer)
        assert [violation.field for violation in answer.violations] == [field]


def guarantee_push(
    agency_address: str, serial: int, **changes: Any
) -> retail_pb2.DeliverSettlementAgencyGuaranteeRequest:
    guarantee = types_pb2.SettlementAgencyIdentificationGuarantee(
        settlement_agency_id="agency-1",
        display_name="First Settlement Agency",
        routing_prefix="4111",
        address=agency_address,
        status=types_pb2.ENTITY_STATUS_ACTIVE,
        registry_serial=serial,
    )
    for name, value in changes.items():
        setattr(guarantee, name, value)
    return retail_pb2.DeliverSettlementAgencyGuaranteeRequest(
        request_id=f"push-test-{serial}",
        guarantee=guarantee,
        registry_serial=guarantee.registry_serial,
        previous_registry_serial=0,
    )


def test_a_forged_guarantee_push_is_refused_and_a_real_one_is_idempotent(
    network: LocalNetwork, harness_network: Network
):
    """DeliverSettlementAgencyGuarantee validates what it caches (the audit's garbage: a
    routing prefix "a", a path for an address, a serial of int64 max) and is idempotent by
    request_id: a replay answers the same, a changed body is refused, neither writes."""
    snapshots = Snapshots(harness_network.databases())
    agency = network.node("agency-1").address
    try:
        before = snapshots.take()
        forged = guarantee_push(agency, 2**63 - 1, routing_prefix="a", address="/etc/passwd")
        refused = send(harness_network, "shop-2", "/DeliverSettlementAgencyGuarantee", forged)
        assert isinstance(refused, RemoteError)
        assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
        assert {violation.field for violation in refused.violations} >= {
            "guarantee.routing_prefix",
            "guarantee.address",
            "guarantee.registry_serial",
        }
        assert changed_tables(before, snapshots.take()) == []

        real = guarantee_push(agency, 900_001)
        first = send(harness_network, "shop-2", "/DeliverSettlementAgencyGuarantee", real)
        after_first = snapshots.take()
        again = send(harness_network, "shop-2", "/DeliverSettlementAgencyGuarantee", real)
        assert isinstance(first, retail_pb2.DeliverSettlementAgencyGuaranteeResponse)
        assert again == first
        assert changed_tables(after_first, snapshots.take()) == []
        changed = guarantee_push(agency, 900_001, display_name="Renamed")
        reused = send(harness_network, "shop-2", "/DeliverSettlementAgencyGuarantee", changed)
        assert isinstance(reused, RemoteError) and reused.reason == "IDEMPOTENCY_KEY_REUSED"
        assert changed_tables(after_first, snapshots.take()) == []
    finally:
        snapshots.close()


def test_a_repeated_logout_answers_the_first_answer(harness_network: Network):
    """The same Logout twice answers the first answer (not SESSION_INVALID); a new request
    on the ended session is refused."""
    token = harness_network.session("agency-1", fresh=True)
    chosen = target(harness_network, "agency-1", "MemberService/Logout")
    channel, _ = harness_network.route(chosen)
    logout = channel.unary_unary(
        chosen.method,
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=settlement_pb2.LogoutResponse.FromString,
    )
    metadata = (("authorization", f"Bearer {token}"),)
    request = settlement_pb2.LogoutRequest(request_id="logout-twice")
    first = logout(request, metadata=metadata, timeout=20)
    assert logout(request, metadata=metadata, timeout=20) == first
    with pytest.raises(grpc.RpcError) as refused:
        logout(settlement_pb2.LogoutRequest(request_id="logout-3"), metadata=metadata, timeout=20)
    assert decode_rpc_error(refused.value).reason == "SESSION_INVALID"


def test_fuzz_every_rpc_of_every_node(network: LocalNetwork, harness_network: Network):
    """The descriptor-driven fuzz suite, CI sample: never UNKNOWN or INTERNAL, invalid input
    writes nothing, every node stays healthy, memory stays bounded, replays hold."""
    manifest = network.data_dir / "network.json"
    report = run_fuzz(manifest, examples_per_rpc=CI_EXAMPLES_PER_RPC, replays_per_rpc=1)
    print(report.summary())
    expected = {f"{t.entity_id}{t.method}" for t in targets(harness_network)}
    assert set(report.by_method) == expected, "every RPC of every node was fuzzed"
    assert report.requests >= 2000
    assert report.replayed >= sum(1 for t in targets(harness_network) if t.mutating)
    assert report.failures == []
    assert json.loads(Path(manifest).read_text())["nodes"]
