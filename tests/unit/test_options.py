"""[options] are checked whole at start: unknown keys, enum spellings, required options."""

from __future__ import annotations

from typing import Any

import pytest

from nodes.common.config import ConfigError, parse_config

BASE: dict[str, Any] = {
    "entity_id": "node-1",
    "database_url": "sqlite:///node.db",
    "approval_address": "127.0.0.1:7000",
    "program_serial": "SN-1",
    "tls": {"ca": "ca.pem", "cert": "n.pem", "key": "n.key"},
}


def config(role: str, options: dict[str, Any], **values: Any) -> Any:
    return parse_config({**BASE, "role": role, "options": options, **values}, environ={})


@pytest.mark.parametrize(
    "spelling", ["single_payment", "SINGLE_PAYMENT", "PAYMENT_METHOD_SINGLE_PAYMENT"]
)
def test_a_payment_method_is_accepted_as_the_protos_spell_it_and_given_to_the_role_lowercase(
    spelling: str,
):
    assert config("retail", {"payment_methods": [spelling]}).options["payment_methods"] == [
        "single_payment"
    ]


@pytest.mark.parametrize(
    ("key", "spelling", "label"),
    [
        ("discovery", "DISCOVERY_VARIANT_PUSH", "push"),
        ("discovery", "CACHE", "cache"),
        ("cancel_procedure", "CANCEL_PROCEDURE_NOTIFIED", "notified"),
    ],
)
def test_every_enumerated_option_takes_the_proto_spelling(key: str, spelling: str, label: str):
    assert config("retail", {key: spelling}).options[key] == label


def test_a_wrong_enum_value_is_refused_at_start_with_the_accepted_spellings():
    with pytest.raises(ConfigError) as refused:
        config("retail", {"payment_methods": ["CARD"]})
    message = str(refused.value)
    assert "config.options.payment_methods: 'CARD' is not one of" in message
    assert "PAYMENT_METHOD_SINGLE_PAYMENT" in message


@pytest.mark.parametrize(
    ("role", "options", "message"),
    [
        ("retail", {"discovry": "push"}, "unknown key(s) discovry for a retail node"),
        ("approval", {"routing_prefix": "4111"}, "unknown key(s) routing_prefix for a approval"),
        ("verification", {"anything": 1}, "unknown key(s) anything for a verification node"),
        ("settlement", {}, "options.routing_prefix: is required for a settlement node"),
        ("settlement", {"routing_prefix": "41"}, "options.routing_prefix: must be 4 to 8 digits"),
        ("retail", {"cache_refresh_interval_s": "often"}, "options.cache_refresh_interval_s"),
        ("retail", {"currency_codes": "USD"}, "options.currency_codes: expected an array"),
        ("marketplace", {"members": {"a": 1}}, "options.members: expected an array of tables"),
    ],
)
def test_an_option_mistake_is_refused_naming_the_option(
    role: str, options: dict[str, Any], message: str
):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config(role, options)


def test_a_missing_routing_prefix_says_what_to_write():
    with pytest.raises(ConfigError) as refused:
        config("settlement", {"session_ttl_s": 60})
    assert 'routing_prefix = "4111"' in str(refused.value)
    assert "[options]" in str(refused.value)


def test_a_routing_prefix_written_as_a_number_is_taken_as_its_digits():
    assert config("settlement", {"routing_prefix": 4111}).options["routing_prefix"] == "4111"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"log_level": "LOUD"}, "config.log_level"),
        ({"listen_address": "localhost"}, "config.listen_address: 'localhost' is not HOST:PORT"),
        ({"limits": {"call_timeout_s": "soon"}}, "config.limits.call_timeout_s: expected a number"),
        ({"limits": 5}, r"config.limits: expected a table \(\[limits\]\)"),
        ({"name": 7}, "config.name: expected a string"),
        ({"tls": {"ca": 1, "cert": "a", "key": "b"}}, "config.tls.ca: expected a file path"),
    ],
)
def test_top_level_mistakes_are_named_instead_of_failing_later(
    values: dict[str, Any], message: str
):
    with pytest.raises(ConfigError, match=message):
        config("verification", {}, **values)


def test_a_lower_case_log_level_is_accepted():
    assert config("verification", {}, log_level="debug").log_level == "DEBUG"
