"""The transport edge for errors: DomainError to google.rpc.Status, and back on the client.

Every refusal carries an ErrorInfo (stable reason, domain, metadata) and, for bad input, a
BadRequest listing each field at fault. Anything that is not a DomainError is a bug on our
side: the caller gets INTERNAL with the trace ID to quote, never a stack trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from nodes.common.errors import DomainError, ErrorKind, FieldViolation

ERROR_DOMAIN = "suretynet.network"
# Where grpc-status puts the serialized google.rpc.Status (rpc_status's key, untyped there).
DETAILS_METADATA_KEY = "grpc-status-details-bin"

_CODES: dict[ErrorKind, grpc.StatusCode] = {
    kind: getattr(grpc.StatusCode, kind.value) for kind in ErrorKind
}


def to_status(error: DomainError) -> grpc.Status:
    """Builds the rich status (with ErrorInfo and BadRequest details) for a domain error."""
    code = _CODES[error.kind]
    details: list[any_pb2.Any] = []
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(
            reason=error.reason, domain=ERROR_DOMAIN, metadata=dict(error.metadata)
        )
    )
    details.append(info)
    if error.violations:
        bad_request = any_pb2.Any()
        bad_request.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description, reason=error.reason
                    )
                    for v in error.violations
                ]
            )
        )
        details.append(bad_request)
    status = status_pb2.Status(code=code.value[0], message=error.message, details=details)
    return rpc_status.to_status(status)


def internal_status(trace_id: str) -> grpc.Status:
    """The status for an unexpected failure: no internals, only the trace ID to report."""
    status = status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error; quote trace ID {trace_id} to the node's operator",
    )
    return rpc_status.to_status(status)


@dataclass(frozen=True)
class RemoteError:
    """A refusal received from another node, decoded from its rich status."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    violations: list[FieldViolation] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


def decode_status(code: grpc.StatusCode, details: str | None, trailing: object) -> RemoteError:
    """Decodes the ``grpc-status-details-bin`` trailer of a failed call, if there is one."""
    reason = ""
    violations: list[FieldViolation] = []
    metadata: dict[str, str] = {}
    raw = None
    for key, value in trailing or ():  # type: ignore[attr-defined]
        if key == DETAILS_METADATA_KEY:
            raw = value
    if raw is not None:
        status = status_pb2.Status.FromString(raw)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations = [FieldViolation(v.field, v.description) for v in bad.field_violations]
    return RemoteError(code, details or "", reason, violations, metadata)


def decode_rpc_error(error: grpc.RpcError) -> RemoteError:
    """Decodes a failed call made with a sync or an aio stub."""
    call = error  # grpc's RpcError raised by stubs is also the Call object
    return decode_status(
        call.code(),
        call.details(),
        call.trailing_metadata(),
    )


def remote_to_domain(remote: RemoteError, *, peer: str) -> DomainError:
    """Re-raises a peer's refusal as our own domain error, keeping its reason code.

    A peer that is down or too slow is UNAVAILABLE/DEADLINE_EXCEEDED with PEER_UNAVAILABLE;
    a peer's INTERNAL stays INTERNAL-free for our caller and becomes UNAVAILABLE too.
    """
    passthrough = {
        grpc.StatusCode.INVALID_ARGUMENT: ErrorKind.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND: ErrorKind.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS: ErrorKind.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION: ErrorKind.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED: ErrorKind.PERMISSION_DENIED,
        # A key or certificate refusal (LICENSE_KEY_REVOKED, ...) is not an outage: it
        # reaches our caller with its reason, so nobody retries it forever.
        grpc.StatusCode.UNAUTHENTICATED: ErrorKind.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED: ErrorKind.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED: ErrorKind.ABORTED,
        grpc.StatusCode.UNIMPLEMENTED: ErrorKind.UNIMPLEMENTED,
    }
    kind = passthrough.get(remote.code)
    if kind is not None and remote.reason:
        return DomainError(
            kind,
            remote.reason,
            f"{peer} refused: {remote.message}",
            violations=list(remote.violations),
            metadata={**remote.metadata, "peer": peer},
        )
    if remote.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        kind = ErrorKind.DEADLINE_EXCEEDED
    else:
        kind = ErrorKind.UNAVAILABLE
    return DomainError(
        kind,
        "PEER_UNAVAILABLE",
        f"{peer} failed with {remote.code.name}: {remote.message}",
        metadata={"peer": peer, "peer_code": remote.code.name},
    )
