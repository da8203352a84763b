"""The registration request each enrolled role sends on first start, from its config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from suretynet.approval.v1 import approval_pb2
from suretynet.type.v1 import types_pb2

from nodes.common.convert import enum_value

if TYPE_CHECKING:
    from nodes.common.node import NodeRuntime

PROGRAM_VERSION = "suretynet-0.1.0"


def registration_request(runtime: NodeRuntime, **extra: Any) -> approval_pb2.RegisterEntityRequest:
    """Installation info (claims 4-5): serial, entity, name, advertised address, plus ``extra``."""
    config = runtime.config
    return approval_pb2.RegisterEntityRequest(
        program_serial=config.program_serial,
        role=enum_value(types_pb2.Role, "ROLE_", config.role),
        entity_id=config.entity_id,
        display_name=config.display_name,
        address=runtime.registered_address,
        replica_addresses=list(config.replica_addresses),
        program_version=PROGRAM_VERSION,
        **extra,
    )


def retail_registration(runtime: NodeRuntime) -> approval_pb2.RegisterEntityRequest:
    """A shop registers its discovery variant, payment methods and private details too."""
    options = runtime.config.options
    details = dict(options.get("private_details", {}))
    return registration_request(
        runtime,
        discovery_variant=enum_value(
            types_pb2.DiscoveryVariant, "DISCOVERY_VARIANT_", options.get("discovery", "directory")
        ),
        accepted_payment_methods=[
            enum_value(types_pb2.PaymentMethod, "PAYMENT_METHOD_", method)
            for method in options.get("payment_methods", ["single_payment"])
        ],
        accepted_currency_codes=list(options.get("currency_codes", ["USD"])),
        private_details=types_pb2.RetailEntityPrivateDetails(**details),
    )


def settlement_registration(runtime: NodeRuntime) -> approval_pb2.RegisterEntityRequest:
    """A settlement agency registers its routing prefix (like a card BIN)."""
    return registration_request(
        runtime, routing_prefix=str(runtime.config.options.get("routing_prefix", ""))
    )
