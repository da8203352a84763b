"""What the interceptor learned about the call being served, readable from any layer below.

The interceptor sets it once per RPC; servicers and use cases read it instead of threading
the gRPC context through every function.
"""

from __future__ import annotations

import contextvars
import ipaddress
import time
from dataclasses import dataclass, field

from nodes.common.identity import EntityIdentity


@dataclass
class CallInfo:
    """The caller and the limits of the RPC being served."""

    method: str
    peer_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    # None for a member on the member port: members prove themselves with a session token.
    caller: EntityIdentity | None
    metadata: dict[str, str] = field(default_factory=dict)
    # time.monotonic() by which the caller stops waiting; None when it set no deadline.
    deadline_monotonic: float | None = None

    @property
    def scope(self) -> str:
        """The idempotency scope of a certificate holder: its URI.

        Members have no certificate; only the role knows who they are (from the session
        token), so a member-facing RPC must pass its own scope (e.g. ``member:ID``). Asking
        for a default would let two members' request IDs collide: it is a programming error.
        """
        if self.caller is None:
            raise RuntimeError(f"{self.method}: member callers need an explicit idempotency scope")
        return self.caller.uri

    def remaining_s(self) -> float | None:
        if self.deadline_monotonic is None:
            return None
        return self.deadline_monotonic - time.monotonic()


current_call: contextvars.ContextVar[CallInfo | None] = contextvars.ContextVar(
    "current_call", default=None
)


def call_info() -> CallInfo:
    """The CallInfo of the RPC being served; a programming error outside one."""
    info = current_call.get()
    if info is None:
        raise RuntimeError("call_info() used outside an RPC served through the interceptor")
    return info


def certificate_caller() -> EntityIdentity:
    """The certificate holder calling an RPC whose policy admits no members.

    The interceptor has already refused certificate-less callers for such an RPC, so a
    None here is a programming error (a policy with ``members=True``), not a caller's.
    """
    caller = call_info().caller
    if caller is None:
        raise RuntimeError("certificate_caller() used on an RPC open to members")
    return caller
