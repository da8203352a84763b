"""Operator authority: a node accepts only its own organization's operators, from known networks.

An operator certificate names its organization: ``suretynet://admin/agency-1`` is agency-1's
operator. Each node's config lists the operator entities it accepts (``operators``, by
default its own entity ID) and the networks operator calls may come from
(``operator_networks``, by default loopback). The institution's nodes (approval and
verification) list the institution's operator, and no other node lists it: no operator
certificate reaches every organization, so none can read every agency's orders or re-point
another organization's registered address. The check runs before any other, on every RPC
an admin certificate calls; node and member callers pass through untouched.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from nodes.common import logs
from nodes.common.calls import CallInfo
from nodes.common.errors import DomainError, ErrorKind
from nodes.common.interceptor import RpcPolicy

log = logging.getLogger(__name__)

OPERATOR_ROLE = "admin"

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class OperatorAuthority:
    """The interceptor check that refuses operators of another organization or address."""

    def __init__(self, accepted: Iterable[str], networks: Iterable[str]) -> None:
        self.accepted = frozenset(accepted)
        self.networks: tuple[IpNetwork, ...] = tuple(
            ipaddress.ip_network(network, strict=False) for network in networks
        )

    async def __call__(self, info: CallInfo, rpc_policy: RpcPolicy) -> None:
        caller = info.caller
        if caller is None or caller.role != OPERATOR_ROLE:
            return
        if caller.entity_id not in self.accepted:
            logs.event(
                log,
                "refused: operator of another organization",
                logging.WARNING,
                caller=caller.uri,
                method=info.method,
            )
            raise DomainError(
                ErrorKind.PERMISSION_DENIED,
                "OPERATOR_NOT_ACCEPTED",
                f"{caller.uri} is not an operator of this node's organization "
                f"(accepted: {', '.join(sorted(self.accepted))})",
                metadata={"caller": caller.uri},
            )
        observed = info.peer_ip
        if observed is None or not any(observed in network for network in self.networks):
            logs.event(
                log,
                "refused: operator address not allowed",
                logging.WARNING,
                caller=caller.uri,
                observed=str(observed),
                method=info.method,
            )
            raise DomainError(
                ErrorKind.PERMISSION_DENIED,
                "OPERATOR_ADDRESS_NOT_ALLOWED",
                f"{caller.uri} may call only from "
                f"{', '.join(str(network) for network in self.networks)}, not from {observed}",
                metadata={"caller": caller.uri, "observed": str(observed)},
            )
