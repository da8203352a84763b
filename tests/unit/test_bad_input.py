"""Bad input at the mechanisms every RPC shares: decoding, enum and timestamp checks, bounded
refusals, and the admin bounds (credit limits, credit standards)."""

from __future__ import annotations

import datetime

import pytest
from google.protobuf import struct_pb2
from suretynet.approval.v1 import approval_pb2
from suretynet.marketplace.v1 import marketplace_pb2
from suretynet.settlement.v1 import settlement_pb2

from nodes.common.decoding import decode_request
from nodes.common.errors import DomainError, ErrorKind, FieldViolation, Violations
from nodes.common.status import to_status
from nodes.marketplace import credit
from nodes.marketplace.credit import Standard
from nodes.settlement.members import MAX_CREDIT_LIMIT_MINOR, validate_credit_limit
from storage.common.database import Store, open_database
from storage.marketplace.repository import MarketplaceRepository


def refusal(body: bytes, message_type) -> DomainError:
    with pytest.raises(DomainError) as refused:
        decode_request(message_type.FromString, body)
    return refused.value


@pytest.mark.parametrize(
    "body",
    [
        b"\x0a\xff\xff\xff\x0f",  # a length beyond the body
        b"\x0a\x03\xff\xfe\xfd",  # invalid UTF-8 in a string field
        b"\xc3\x3e" * 200 + b"\xc4\x3e" * 200,  # unknown groups nested past the limit
    ],
)
def test_a_body_that_does_not_parse_is_invalid_argument(body: bytes):
    error = refusal(body, approval_pb2.IssueProgramSerialRequest)
    assert (error.kind, error.reason) == (ErrorKind.INVALID_ARGUMENT, "REQUEST_UNDECODABLE")


def test_an_undefined_enum_number_is_refused_with_its_path_even_when_nested():
    request = marketplace_pb2.SetCreditStandardsRequest(
        standards=[
            marketplace_pb2.CreditStandard(item=1, max_count=1, window_days=1),
            marketplace_pb2.CreditStandard(item=12, max_count=1, window_days=1),
        ]
    )
    error = refusal(request.SerializeToString(), marketplace_pb2.SetCreditStandardsRequest)
    assert (error.reason, [v.field for v in error.violations]) == (
        "FIELD_INVALID",
        ["standards[1].item"],
    )
    decision = marketplace_pb2.ReplyToEstimateRequest(decision=-1).SerializeToString()
    assert refusal(decision, marketplace_pb2.ReplyToEstimateRequest).violations[0].field == (
        "decision"
    )


def test_an_undefined_number_in_a_repeated_enum_or_a_map_is_refused_with_its_index_or_key():
    register = approval_pb2.RegisterEntityRequest()
    register.accepted_payment_methods.extend([1, 99])  # type: ignore[list-item]
    error = refusal(register.SerializeToString(), approval_pb2.RegisterEntityRequest)
    assert [v.field for v in error.violations] == ["accepted_payment_methods[1]"]
    # No request of the protocol has a map of enums or messages yet; Struct is one (a map
    # of Value, whose null_value is an enum), so the walk is ready for the first.
    document = struct_pb2.Struct()
    document.fields["fine"].string_value = "x"
    document.fields["odd"].null_value = 7  # type: ignore[assignment]
    error = refusal(document.SerializeToString(), struct_pb2.Struct)
    assert [v.field for v in error.violations] == ["fields['odd'].null_value"]
    document.fields["odd"].null_value = 0  # type: ignore[assignment]
    assert decode_request(struct_pb2.Struct.FromString, document.SerializeToString()) == document


def test_an_impossible_timestamp_is_refused_before_any_servicer_converts_it():
    request = settlement_pb2.RunBillingRequest(request_id="r")
    request.ordered_before.seconds = -83849872261
    error = refusal(request.SerializeToString(), settlement_pb2.RunBillingRequest)
    assert [v.field for v in error.violations] == ["ordered_before"]
    fine = settlement_pb2.RunBillingRequest(request_id="r")
    fine.ordered_before.FromDatetime(datetime.datetime(2030, 1, 1))
    decoded = decode_request(settlement_pb2.RunBillingRequest.FromString, fine.SerializeToString())
    assert decoded == fine


def test_a_refusal_quoting_huge_input_still_fits_the_trailers():
    huge = "x" * (1024 * 1024)
    status = to_status(
        DomainError(
            ErrorKind.NOT_FOUND,
            "ENTITY_NOT_FOUND",
            f"no entity {huge}",
            violations=[FieldViolation(huge, huge)],
            metadata={"entity": huge},
        )
    )
    size = len(status.details) + sum(len(value) for _, value in status.trailing_metadata)
    assert size < 16 * 1024


def test_a_credit_limit_is_bounded():
    for amount in (-1, MAX_CREDIT_LIMIT_MINOR + 1, 2**63 - 1):
        violations = Violations()
        validate_credit_limit(violations, "credit_limit", amount, "JPY")
        with pytest.raises(DomainError):
            violations.raise_if_any()
    violations = Violations()
    validate_credit_limit(violations, "credit_limit", MAX_CREDIT_LIMIT_MINOR, "JPY")
    violations.raise_if_any()


def test_credit_standards_must_tell_purchasers_apart():
    """No standards, or a threshold of 0, would guarantee every purchaser; a threshold above
    the number of standards would guarantee none."""
    store = Store(open_database("sqlite:///:memory:"))
    repo = MarketplaceRepository(store.database)
    store.database.create_tables(repo.tables)
    now = datetime.datetime(2030, 1, 1)
    one = [Standard("ORDER_CANCELS", 1, 30)]
    for standards, threshold, field in (
        ([], 0, "standards"),
        (one, 0, "threshold_points"),
        (one, 2, "threshold_points"),
    ):
        with pytest.raises(DomainError) as refused:
            credit.set_standards(repo, standards, threshold, now)
        assert field in {violation.field for violation in refused.value.violations}
    credit.set_standards(repo, one, 1, now)
