"""Every ``[options]`` key each role reads, with its type, so a node's config is checked whole.

A key a role does not read is refused by name at start, so a typo never falls back to a
default. An enumerated value is accepted as the protos and grpcurl spell it
(``PAYMENT_METHOD_SINGLE_PAYMENT``), without its prefix (``SINGLE_PAYMENT``), or in lower
case (``single_payment``), and is handed to the role in lower case. A required option that
is missing is named with what to write.

A role that reads a new option declares it here; ranges stay with the role that reads it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class OptionError(ValueError):
    """An option is unknown, missing or of the wrong kind; the message names it."""


@dataclass(frozen=True)
class Option:
    """One option: its kind, its allowed values if enumerated, and whether it is required."""

    # int, float, str, bool, digits, choice, choices (array), strings (array), table, tables
    kind: str
    help: str = ""
    choices: tuple[str, ...] = ()
    # The proto enum's value prefix, accepted in front of a choice (PAYMENT_METHOD_).
    proto_prefix: str = ""
    required: bool = False
    example: str = ""


PAYMENT_METHODS = ("single_payment", "installments", "revolving")
SECONDS = "float"

# The audit chain of approval and verification (nodes/common/audit_chain.py, docs/AUDIT.md).
AUDIT_OPTIONS = {
    "audit_checkpoint_interval_s": Option(SECONDS, "how often the audit chain's head is signed"),
    "audit_signing_key": Option(
        "str", "the audit signing key file (default: next to the TLS key), kept out of the DB"
    ),
}

ROLE_OPTIONS: dict[str, dict[str, Option]] = {
    "approval": {
        "license_key_validity_days": Option("float", "how long an issued license key lives"),
        "license_key_rotation_grace_s": Option(SECONDS, "how long a rotated-out key still works"),
        "related_information_max_cache_age_s": Option("int", "how long nodes may cache it"),
        "guarantee_push_interval_s": Option(SECONDS, "push discovery: pass interval"),
        "guarantee_push_max_backoff_s": Option(SECONDS, "push discovery: retry bound"),
        **AUDIT_OPTIONS,
    },
    "verification": {**AUDIT_OPTIONS},
    "settlement": {
        "routing_prefix": Option(
            "digits",
            "the agency's routing prefix (4-8 digits), like a card BIN",
            required=True,
            example='routing_prefix = "4111"',
        ),
        "anonymous_id_validity_s": Option("int", "how long an anonymous user ID is valid"),
        "session_ttl_s": Option("int", "member session lifetime"),
        "guarantee_refresh_interval_s": Option("int", "cache discovery: refresh interval"),
        "guarantee_max_staleness_s": Option("int", "cache discovery: staleness bound"),
        "resume_interval_s": Option(
            "int", "how often the agency delivers unacknowledged reports and voids itself"
        ),
    },
    "retail": {
        "discovery": Option(
            "choice",
            "how the shop finds agencies",
            choices=("directory", "push", "cache"),
            proto_prefix="DISCOVERY_VARIANT_",
        ),
        "cache_refresh_interval_s": Option("int", "cache discovery: refresh interval"),
        "cache_max_staleness_s": Option("int", "cache discovery: staleness bound"),
        "push_catch_up_interval_s": Option("int", "push discovery: catch-up interval"),
        "push_catch_up": Option(
            "bool", "push discovery: false turns every catch-up off (the shop knows only pushes)"
        ),
        "payment_methods": Option(
            "choices",
            "payment methods the shop accepts",
            choices=PAYMENT_METHODS,
            proto_prefix="PAYMENT_METHOD_",
        ),
        "currency_codes": Option("strings", "ISO 4217 currencies the shop accepts"),
        "private_details": Option("table", "the shop's private details, given to agencies"),
        "cancel_procedure": Option(
            "choice",
            "cancellation procedure (claim 2 notified, claim 3 verified)",
            choices=("notified", "verified"),
            proto_prefix="CANCEL_PROCEDURE_",
        ),
        "purchase_resume_interval_s": Option(SECONDS, "how often pending orders are resumed"),
        "order_lifetime_s": Option(
            SECONDS, "how long an order may wait for its agency before the shop voids it"
        ),
    },
    "marketplace": {
        "currency_code": Option("str", "the currency the marketplace trades in"),
        "session_ttl_s": Option(SECONDS, "purchaser session lifetime"),
        "guarantee_validity_s": Option(SECONDS, "credit guarantee lifetime"),
        "guarantee_headroom_basis_points": Option("int", "guaranteed amount above the quote"),
        "estimate_validity_s": Option(SECONDS, "how long an estimate can be accepted"),
        "payment_terms_days": Option("int", "invoice payment terms"),
        "max_partners_quoted": Option("int", "partners asked per request"),
        "resume_interval_s": Option(SECONDS, "resume loop interval"),
        "resume_batch": Option("int", "resume loop batch"),
        "resume_after_s": Option(SECONDS, "resend an unanswered partner call after"),
        "resume_max_attempts": Option("int", "give a partner call up after"),
        "resume_backoff_max_s": Option(SECONDS, "resume backoff bound"),
        "commodities": Option("tables", "commodities stocked on first start"),
        "members": Option("tables", "contract members enrolled on first start"),
        "contracts": Option("tables", "mediation contracts made on first start"),
    },
}

_DIGITS = re.compile(r"^[0-9]{4,8}$")


def _choice(option: Option, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise OptionError(f"options.{key}: expected a string, one of {', '.join(option.choices)}")
    label = value.strip()
    if option.proto_prefix and label.upper().startswith(option.proto_prefix):
        label = label[len(option.proto_prefix) :]
    label = label.lower()
    if label not in option.choices:
        spelled = ", ".join(
            f"{choice} (or {option.proto_prefix}{choice.upper()})" for choice in option.choices
        )
        raise OptionError(f"options.{key}: {value!r} is not one of {spelled}")
    return label


def _check(option: Option, key: str, value: Any) -> Any:
    kind = option.kind
    if kind == "choice":
        return _choice(option, key, value)
    if kind == "choices":
        if not isinstance(value, list) or not value:
            raise OptionError(f"options.{key}: expected a non-empty array of strings")
        return [_choice(option, key, item) for item in value]
    if kind == "strings":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise OptionError(f"options.{key}: expected an array of strings")
        return value
    if kind == "digits":
        text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
        if not _DIGITS.match(text):
            raise OptionError(f"options.{key}: must be 4 to 8 digits, e.g. {option.example}")
        return text
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise OptionError(f"options.{key}: expected a whole number, got {value!r}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise OptionError(f"options.{key}: expected a number, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise OptionError(f"options.{key}: expected a string, got {value!r}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise OptionError(f"options.{key}: expected true or false, got {value!r}")
        return value
    if kind == "table":
        if not isinstance(value, dict):
            raise OptionError(f"options.{key}: expected a table")
        return value
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise OptionError(f"options.{key}: expected an array of tables")
    return value


def validate_options(role: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` checked against ``role``'s declared options, enumerations in lower case."""
    declared = ROLE_OPTIONS.get(role, {})
    unknown = sorted(set(options) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise OptionError(
            f"options: unknown key(s) {', '.join(unknown)} for a {role} node (it reads: {known})"
        )
    for key, option in declared.items():
        if option.required and key not in options:
            raise OptionError(
                f"options.{key}: is required for a {role} node ({option.help}); "
                f"write it under [options], e.g. {option.example}"
            )
    return {key: _check(declared[key], key, value) for key, value in options.items()}
