"""Conversions between stored values and the wire's types."""

from __future__ import annotations

import datetime

from google.protobuf import timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from nodes.common.convert import timestamp


@given(st.datetimes(timezones=st.none() | st.just(datetime.UTC)))
def test_a_stored_time_becomes_the_timestamp_protobuf_itself_would_make(moment):
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(moment.replace(tzinfo=datetime.UTC))
    assert timestamp(moment) == expected


def test_no_time_stays_unset():
    assert timestamp(None) is None
