"""Caller identity: URI SANs and peer addresses, parsed strictly."""

from __future__ import annotations

import ipaddress

import pytest

from nodes.common.errors import DomainError
from nodes.common.identity import EntityIdentity, host_ip, parse_entity_uri, parse_peer_ip


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("ipv4:10.1.2.3:5555", "10.1.2.3"),
        ("ipv6:[::1]:443", "::1"),
        ("ipv6:[fe80::1%25eth0]:443", "fe80::1"),
        ("ipv6:%5B2001:db8::7%5D:50051", "2001:db8::7"),
        # A dual-stack listener reports IPv4 callers as IPv4-mapped IPv6: compare as IPv4.
        ("ipv6:[::ffff:10.1.2.3]:5555", "10.1.2.3"),
    ],
)
def test_peer_ip_is_parsed_for_ipv4_ipv6_and_mapped_addresses(peer: str, expected: str):
    assert parse_peer_ip(peer) == ipaddress.ip_address(expected)


def test_a_unix_socket_peer_has_no_ip():
    with pytest.raises(ValueError, match="not an IP peer"):
        parse_peer_ip("unix:/tmp/socket")


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.5:7000", "10.0.0.5"),
        ("[2001:db8::1]:7000", "2001:db8::1"),
        ("[::ffff:127.0.0.1]:1", "127.0.0.1"),
    ],
)
def test_registered_addresses_compare_by_ip_only(address: str, expected: str):
    assert host_ip(address) == ipaddress.ip_address(expected)


def test_entity_uri_round_trips():
    identity = parse_entity_uri("suretynet://retail/shop-1")
    assert identity == EntityIdentity("retail", "shop-1")
    assert identity.uri == "suretynet://retail/shop-1"


@pytest.mark.parametrize(
    "uri",
    [
        "https://retail/shop-1",
        "suretynet://bank/shop-1",
        "suretynet://retail/",
        "suretynet://retail/Shop_1",
        "suretynet://retail/shop-1?x=1",
        "suretynet://retail/shop-1/extra",
    ],
)
def test_malformed_entity_uris_are_refused(uri: str):
    with pytest.raises(DomainError) as refused:
        parse_entity_uri(uri)
    assert refused.value.reason == "CERTIFICATE_IDENTITY_INVALID"
