"""The one server interceptor every node runs: trace, identity, authorization, errors.

For each RPC it
1. opens the RPC's SERVER span in the caller's trace (W3C ``traceparent``), so every log
   line carries the trace ID, and times the RPC by method and status code (Prometheus);
2. reads the caller's identity from its verified client certificate (URI SAN);
3. checks the method's policy: which certificate roles may call it, and whether members
   (no certificate, session token) may;
4. runs the node's extra checks (license keys at approval, address correlation);
5. decodes the request itself: undecodable bytes and undefined enum numbers are the
   caller's INVALID_ARGUMENT (nodes/common/decoding.py);
6. turns a DomainError into a rich status, a database that is down (restart, failover)
   into UNAVAILABLE/DATABASE_UNAVAILABLE, and anything unexpected into a bare INTERNAL.
Reflection and health are exempt, so grpcurl and load balancers always work.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from nodes.common import failpoints, logs, metrics, telemetry
from nodes.common.calls import CallInfo, current_call
from nodes.common.decoding import decode_request
from nodes.common.errors import DomainError, ErrorKind
from nodes.common.identity import EntityIdentity, parse_entity_uri, parse_peer_ip
from nodes.common.status import bounded, internal_status, to_status
from storage.common.database import is_unavailable

log = logging.getLogger(__name__)

EXEMPT_PREFIXES = ("/grpc.reflection.", "/grpc.health.")
# Only honoured on a node started with --insecure-dev: plaintext has no certificate.
DEV_IDENTITY_METADATA_KEY = "x-suretynet-dev-identity"


@dataclass(frozen=True)
class RpcPolicy:
    """Who may call one RPC: certificate roles, and whether members (no certificate) may."""

    roles: frozenset[str]
    members: bool = False
    # Approval only: node callers must present a valid license key in metadata.
    license_key: bool = False
    # Address correlation applies to every node caller, except where the caller cannot be
    # registered yet (the registration request itself, which checks its own address).
    correlate: bool = True


def policy(
    *roles: str, members: bool = False, license_key: bool = False, correlate: bool = True
) -> RpcPolicy:
    """Declares who may call one RPC; see RpcPolicy."""
    return RpcPolicy(
        frozenset(roles), members=members, license_key=license_key, correlate=correlate
    )


# A check run after the policy passed; raises DomainError to refuse the call.
CallCheck = Callable[[CallInfo, RpcPolicy], Awaitable[None]]


class NodeInterceptor(grpc.aio.ServerInterceptor):
    """Applies the node's policy table and checks to every RPC it serves."""

    def __init__(
        self,
        policies: Mapping[str, RpcPolicy],
        checks: Sequence[CallCheck] = (),
        *,
        insecure_dev: bool = False,
    ) -> None:
        self._policies = policies
        self._checks = list(checks)
        self._insecure_dev = insecure_dev
        # method -> (the registered handler, its wrapped handler): wrapped once, not per call.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def add_check(self, check: CallCheck, *, first: bool = False) -> None:
        """Adds a check; ``first`` runs it before the role's own (identity before keys)."""
        if first:
            self._checks.insert(0, check)
        else:
            self._checks.append(check)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(EXEMPT_PREFIXES):
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        rpc_policy = self._policies.get(method)
        # The request arrives as raw bytes and is decoded inside the wrapper, after the
        # caller is admitted, so a body that does not parse is the caller's INVALID_ARGUMENT
        # (nodes/common/decoding.py), not gRPC's own UNKNOWN.
        deserializer = handler.request_deserializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, rpc_policy, handler.unary_unary, deserializer),
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, rpc_policy, handler.unary_stream, deserializer),
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        return handler

    async def _admit(
        self,
        method: str,
        rpc_policy: RpcPolicy | None,
        context: grpc.aio.ServicerContext,
        metadata: dict[str, str],
    ) -> CallInfo:
        remaining = context.time_remaining()
        info = CallInfo(
            method=method,
            peer_ip=_peer_ip(context.peer()),
            caller=self._caller(context, metadata),
            metadata=metadata,
            deadline_monotonic=None if remaining is None else time.monotonic() + remaining,
        )
        current_call.set(info)
        # The audit line: every RPC received, who sent it. `suretynet demo` rebuilds each
        # flow's message sequence from these lines by trace ID.
        logs.event(
            log,
            "rpc",
            method=method,
            caller=info.caller.uri if info.caller else "member",
            peer=_ip_text(info.peer_ip),
        )
        if rpc_policy is None:
            # Fail closed: an RPC nobody declared is callable by nobody.
            raise DomainError(
                ErrorKind.PERMISSION_DENIED, "ROLE_NOT_ALLOWED", f"{method} is not open to callers"
            )
        if info.caller is None:
            if not rpc_policy.members:
                raise DomainError(
                    ErrorKind.UNAUTHENTICATED,
                    "CLIENT_CERTIFICATE_REQUIRED",
                    f"{method} needs a client certificate from the network CA (mutual TLS)",
                )
        elif info.caller.role not in rpc_policy.roles:
            logs.event(
                log,
                "refused: role not allowed",
                logging.WARNING,
                method=method,
                caller=info.caller.uri,
            )
            raise DomainError(
                ErrorKind.PERMISSION_DENIED,
                "ROLE_NOT_ALLOWED",
                f"role {info.caller.role!r} may not call {method}",
                metadata={"caller": info.caller.uri},
            )
        for check in self._checks:
            await check(info, rpc_policy)
        return info

    def _caller(
        self, context: grpc.aio.ServicerContext, metadata: Mapping[str, str]
    ) -> EntityIdentity | None:
        auth = context.auth_context()
        uris = [
            value.decode()
            for value in auth.get("x509_subject_alternative_name", [])
            if value.startswith(b"suretynet://")
        ]
        if uris:
            if len(uris) != 1:
                raise DomainError(
                    ErrorKind.UNAUTHENTICATED,
                    "CERTIFICATE_IDENTITY_INVALID",
                    "client certificate carries more than one suretynet:// URI SAN",
                )
            return parse_entity_uri(uris[0])
        if auth.get("x509_pem_cert"):
            raise DomainError(
                ErrorKind.UNAUTHENTICATED,
                "CERTIFICATE_IDENTITY_INVALID",
                "client certificate carries no suretynet://ROLE/ENTITY URI SAN",
            )
        if self._insecure_dev and DEV_IDENTITY_METADATA_KEY in metadata:
            return parse_entity_uri(metadata[DEV_IDENTITY_METADATA_KEY])
        return None

    def _wrap_unary(
        self,
        method: str,
        rpc_policy: RpcPolicy | None,
        behavior: Callable[..., Any],
        deserializer: Callable[[bytes], Any] | None,
    ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        step = method.rsplit(".", 1)[-1]

        async def serve(body: Any, context: grpc.aio.ServicerContext) -> Any:
            with _Observed(method, context) as observed:
                try:
                    await self._admit(method, rpc_policy, context, observed.metadata)
                    request = decode_request(deserializer, body)
                    failpoints.begin(step)
                    result = behavior(request, context)
                    answer = await result if inspect.isawaitable(result) else result
                    crash_after_answer = failpoints.after_answer(step)
                    if crash_after_answer is not None:
                        context.add_done_callback(crash_after_answer)  # type: ignore[arg-type]
                    return answer
                except Exception as error:
                    await observed.abort(error)

        return serve

    def _wrap_stream(
        self,
        method: str,
        rpc_policy: RpcPolicy | None,
        behavior: Callable[..., Any],
        deserializer: Callable[[bytes], Any] | None,
    ) -> Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]:
        async def serve(body: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            with _Observed(method, context) as observed:
                try:
                    await self._admit(method, rpc_policy, context, observed.metadata)
                    request = decode_request(deserializer, body)
                    async for item in behavior(request, context):
                        yield item
                except Exception as error:
                    await observed.abort(error)

        return serve


class _Observed:
    """One served RPC's span and latency, closed with the status code it ended with."""

    def __init__(self, method: str, context: grpc.aio.ServicerContext) -> None:
        self._method = method
        self._context = context
        self._code = grpc.StatusCode.OK
        self._reason = ""
        # The call's text metadata (binary "-bin" values are left out), read once per RPC.
        self.metadata = {
            key: value
            for key, value in context.invocation_metadata() or ()
            if isinstance(value, str)
        }

    def __enter__(self) -> _Observed:
        self._started = time.perf_counter()
        self._span_scope = telemetry.open_server_span(self._method, self.metadata)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if exc_info[1] is not None and self._code == grpc.StatusCode.OK:
            # An exception this interceptor did not turn into a status (a cancelled call).
            self._code = grpc.StatusCode.CANCELLED
        metrics.rpc_served(self._method, self._code.name).observe(
            time.perf_counter() - self._started
        )
        if self._reason:
            metrics.RPC_REFUSALS.labels(method=self._method, reason=self._reason).inc()
        telemetry.finish_span(self._span_scope.span, self._code, self._reason, server=True)
        self._span_scope.close(*exc_info)

    async def abort(self, error: Exception) -> None:
        """Ends the RPC with the status ``error`` maps to (see ``_status_for``)."""
        if _is_abort(error):
            # A servicer aborted by itself: its code is on the context.
            code = self._context.code()
            self._code = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
            raise error
        status = _status_for(self._method, error)
        self._code = status.code
        if isinstance(error, DomainError):
            self._reason = error.reason
        elif is_unavailable(error):
            self._reason = "DATABASE_UNAVAILABLE"
        await self._context.abort(status.code, status.details, status.trailing_metadata)


# The text of a peer's IP for its audit line, made once per address.
_ip_text = functools.lru_cache(maxsize=4096)(str)


def _peer_ip(peer: str) -> Any:
    try:
        return parse_peer_ip(peer)
    except ValueError:
        return None


def _status_for(method: str, error: Exception) -> grpc.Status:
    """The status an exception ends an RPC with; logs the refusal or the failure."""
    if isinstance(error, DomainError):
        logs.event(
            log,
            "refused",
            logging.INFO,
            method=method,
            code=error.kind.value,
            reason=error.reason,
            detail=bounded(error.message),
        )
        return to_status(error)
    if isinstance(error, NotImplementedError):
        return to_status(
            DomainError(
                ErrorKind.UNIMPLEMENTED,
                "NOT_IMPLEMENTED",
                f"{method} is defined by the protocol but not served by this release",
            )
        )
    if is_unavailable(error):
        logs.event(log, "database unavailable", logging.WARNING, method=method, detail=str(error))
        return to_status(
            DomainError(
                ErrorKind.UNAVAILABLE,
                "DATABASE_UNAVAILABLE",
                "the node's database is unavailable; retry with the same request_id",
            )
        )
    log.exception("unexpected failure in %s", method)
    return internal_status(logs.current_trace_id())


def _is_abort(error: Exception) -> bool:
    # context.abort() raises grpc's own AbortError; it must travel up untouched.
    return isinstance(error, grpc.aio.AbortError)
