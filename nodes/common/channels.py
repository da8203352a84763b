"""Outgoing calls to other nodes: mutual TLS, deadlines, trace propagation, bounded retries.

Every attempt of every call passes ``observed_call``: it opens the attempt's CLIENT span,
sends its W3C ``traceparent``, and times the attempt by method and status code.

Every call gets a deadline: the configured per-call timeout, shortened to what is left of
the incoming call's deadline, so a chain of calls never outlives its first caller. Only
calls the caller marks idempotent are retried, and only on UNAVAILABLE.

An address naming several replicas of one entity (``ip:port,ip:port``) gets one channel
that spreads calls over them with gRPC's ``round_robin`` policy and client-side health
checking (grpc.health.v1): a replica that is down or reports NOT_SERVING gets no calls
until it is back, and a call that failed on it is retried on another.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc

from nodes.common import logs, metrics, telemetry, tls
from nodes.common.calls import current_call
from nodes.common.config import NodeConfig
from nodes.common.errors import DomainError, ErrorKind
from nodes.common.identity import entity_uri, host_ip, replica_addresses
from nodes.common.interceptor import DEV_IDENTITY_METADATA_KEY
from nodes.common.status import decode_rpc_error, remote_to_domain

log = logging.getLogger(__name__)

R = TypeVar("R")
S = TypeVar("S")

LICENSE_KEY_METADATA_KEY = "x-suretynet-license-key"
RECONNECT_BACKOFF_MS = 100
MAX_RECONNECT_BACKOFF_MS = 1_000
# How long one retry waits for a reconnecting channel: a little over one reconnect backoff.
RETRY_READY_WAIT_S = 1.5
# Several replicas of one entity: calls go to each READY replica in turn, and only to
# replicas whose health service (the whole server, "") reports SERVING.
REPLICA_SERVICE_CONFIG = json.dumps(
    {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": ""}}
)
# Below this, a call cannot do useful work: refuse rather than send a doomed request.
MIN_USEFUL_DEADLINE_S = 0.01


# What gRPC says when a TLS handshake fails on the peer's certificate (untrusted, wrong
# address, expired). Our own certificate refused by the peer shows only as a closed
# socket, which cannot be told from an outage; the peer logs it.
_CERTIFICATE_FAILURES = (
    "handshake failed",
    "certificate_verify_failed",
    "not in peer certificate",
    "verification check failed",
)


def _certificate_failure(remote: Any) -> bool:
    message = str(remote.message).lower()
    return (
        remote.code == grpc.StatusCode.UNAVAILABLE
        and not remote.reason
        and any(marker in message for marker in _CERTIFICATE_FAILURES)
    )


def replicas_target(replicas: list[str]) -> str:
    """A static gRPC target listing every replica (``ipv4:a:1,b:2`` or ``ipv6:[a]:1,...``).

    gRPC's static address lists take IP literals only, so replicas are named by IP.
    """
    ips = [host_ip(replica) for replica in replicas]
    if all(ip.version == 4 for ip in ips):
        return "ipv4:" + ",".join(replicas)
    if all(ip.version == 6 for ip in ips):
        return "ipv6:" + ",".join(replicas)
    raise ValueError(f"replica addresses mix IPv4 and IPv6: {','.join(replicas)}")


def channel_target(address: str) -> tuple[str, list[tuple[str, Any]]]:
    """The gRPC target for ``address`` (one node, or ``ip:port,ip:port`` for an entity's
    replicas) and the channel options it needs beyond the common ones."""
    replicas = replica_addresses(address)
    if len(replicas) <= 1:
        return address, []
    return replicas_target(replicas), [
        ("grpc.service_config", REPLICA_SERVICE_CONFIG),
        # Every replica of an entity presents the entity's one certificate, whose IP SANs
        # name every replica; the name checked is the first replica's IP.
        ("grpc.ssl_target_name_override", str(host_ip(replicas[0]))),
        ("grpc.default_authority", replicas[0]),
    ]


def secure_channel(address: str, credentials: grpc.ChannelCredentials) -> grpc.aio.Channel:
    """A TLS channel to one node, or over every replica of one (see ``channel_target``)."""
    target, options = channel_target(address)
    return grpc.aio.secure_channel(target, credentials, options=options)


def method_of(rpc: Any) -> str:
    """The full method name of a stub's multi-callable (``/package.Service/Method``)."""
    method = getattr(rpc, "_method", b"")
    return method.decode() if isinstance(method, bytes) else str(method)


async def observed_call(rpc: Callable[..., Awaitable[R]], request: Any, **kwargs: Any) -> R:
    """One outgoing call attempt: its CLIENT span, ``traceparent`` and latency histogram.

    Done around the call rather than as a grpc.aio client interceptor: an intercepted call
    costs gRPC an extra task and callbacks on every attempt (docs/PERFORMANCE.md).
    """
    method = method_of(rpc)
    started = time.perf_counter()
    scope = telemetry.open_client_span(method)
    kwargs["metadata"] = (*kwargs.get("metadata", ()), *telemetry.outgoing_metadata())
    code = grpc.StatusCode.UNKNOWN
    failure: BaseException | None = None
    try:
        response = await rpc(request, **kwargs)
        code = grpc.StatusCode.OK
        return response
    except BaseException as error:
        failure = error
        if isinstance(error, grpc.RpcError):
            code = error.code()
        elif isinstance(error, asyncio.CancelledError):
            code = grpc.StatusCode.CANCELLED
        raise
    finally:
        metrics.rpc_called(method, code.name).observe(time.perf_counter() - started)
        telemetry.finish_span(scope.span, code, server=False)
        scope.close(
            type(failure) if failure else None,
            failure,
            failure.__traceback__ if failure else None,
        )


class Channels:
    """A node's pool of client channels to its peers, one per address."""

    def __init__(self, config: NodeConfig) -> None:
        self._config = config
        self._channels: dict[str, grpc.aio.Channel] = {}
        # (address, stub type) -> (the channel it was made on, the stub); see ``stub``.
        self._stubs: dict[tuple[str, Any], tuple[grpc.aio.Channel, Any]] = {}
        self._credentials = (
            None
            if config.insecure_dev or config.tls is None
            else tls.node_client_credentials(config.tls)
        )
        self._stamp = tls.files_stamp(config.tls) if config.tls is not None else ()
        # Channels made with a certificate since renewed: closed with the pool.
        self._retired: list[grpc.aio.Channel] = []
        # Set once the node holds a license key; sent on every call to approval.
        self.license_key: Callable[[], str | None] = lambda: None
        # Told how approval answered each call carrying the license key: "" when it was
        # accepted, the LICENSE_KEY_* reason when it was refused (the node's key keeper).
        self.on_license_answer: Callable[[str], None] = lambda reason: None

    def _reload_credentials(self) -> None:
        """New client credentials once the certificate files changed (pki renew)."""
        config = self._config
        if config.tls is None or self._credentials is None:
            return
        stamp = tls.files_stamp(config.tls)
        if stamp == self._stamp:
            return
        try:
            credentials = tls.node_client_credentials(config.tls)
        except OSError:
            return
        self._stamp, self._credentials = stamp, credentials
        self._retired.extend(self._channels.values())
        self._channels.clear()
        logs.event(log, "client certificate reloaded", cert=str(config.tls.cert))

    def stub(self, address: str, stub_type: Callable[[grpc.aio.Channel], S]) -> S:
        """A ``stub_type`` over the channel to ``address``, made once per channel.

        Ask for it on every call rather than keeping it: a renewed certificate makes a new
        channel (``channel``), and a kept stub would go on calling over the old one, with
        the old certificate, until that expires.
        """
        channel = self.channel(address)
        cached = self._stubs.get((address, stub_type))
        if cached is None or cached[0] is not channel:
            cached = (channel, stub_type(channel))
            self._stubs[(address, stub_type)] = cached
        return cached[1]

    def channel(self, address: str) -> grpc.aio.Channel:
        self._reload_credentials()
        channel = self._channels.get(address)
        if channel is None:
            limit = self._config.limits.max_message_bytes
            options = [
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                # A restarted peer is back within our bounded retries: gRPC's default
                # reconnect backoff (1 s, growing to 120 s) would outlast them.
                ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS),
                ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MS),
                ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
                # Retries are ours (``call``, idempotent calls only): gRPC's own retry
                # machinery would only buffer every message for nothing.
                ("grpc.enable_retries", 0),
            ]
            target, replica_options = channel_target(address)
            options += replica_options
            if self._credentials is None:
                channel = grpc.aio.insecure_channel(target, options=options)
            else:
                channel = grpc.aio.secure_channel(target, self._credentials, options=options)
            self._channels[address] = channel
        return channel

    def timeout_s(self) -> float:
        """This call's deadline: the per-call bound, cut to the incoming call's remainder."""
        timeout = self._config.limits.call_timeout_s
        info = current_call.get()
        remaining = info.remaining_s() if info else None
        if remaining is not None:
            timeout = min(timeout, remaining)
        if timeout < MIN_USEFUL_DEADLINE_S:
            raise DomainError(
                ErrorKind.DEADLINE_EXCEEDED,
                "PEER_UNAVAILABLE",
                "the incoming call's deadline leaves no time for the next hop",
            )
        return timeout

    def metadata(self, *, to_approval: bool) -> Sequence[tuple[str, str]]:
        # The trace travels as traceparent, added per attempt by observed_call.
        items: list[tuple[str, str]] = []
        if to_approval:
            key = self.license_key()
            if key:
                items.append((LICENSE_KEY_METADATA_KEY, key))
        if self._config.insecure_dev:
            items.append(
                (DEV_IDENTITY_METADATA_KEY, entity_uri(self._config.role, self._config.entity_id))
            )
        return items

    async def call(
        self,
        rpc: Callable[..., Awaitable[R]],
        request: Any,
        *,
        peer: str,
        idempotent: bool,
        to_approval: bool = False,
    ) -> R:
        """Calls ``rpc`` (a stub method) and returns its response, or raises DomainError.

        A peer's refusal keeps its reason code; a peer that is down becomes
        UNAVAILABLE/PEER_UNAVAILABLE after the bounded retries.

        The first attempt fails fast. A retry (idempotent calls only) waits for the channel
        to reconnect, for at most RETRY_READY_WAIT_S: a peer back from a restart is used
        as soon as the channel reconnects, and a peer still down costs a few seconds.
        """
        attempts = self._config.limits.max_attempts if idempotent else 1
        backoff_s = self._config.limits.retry_backoff_s
        for attempt in range(1, attempts + 1):
            retrying = attempt > 1
            timeout_s = self.timeout_s()
            own_wait = retrying and timeout_s > RETRY_READY_WAIT_S
            try:
                response = await observed_call(
                    rpc,
                    request,
                    timeout=RETRY_READY_WAIT_S if own_wait else timeout_s,
                    metadata=self.metadata(to_approval=to_approval),
                    wait_for_ready=retrying,
                )
                if to_approval:
                    self.on_license_answer("")
                return response
            except grpc.RpcError as error:
                remote = decode_rpc_error(error)
                if to_approval and remote.reason.startswith("LICENSE_KEY_"):
                    self.on_license_answer(remote.reason)
                if _certificate_failure(remote):
                    raise DomainError(
                        ErrorKind.UNAUTHENTICATED,
                        "PEER_CERTIFICATE_REJECTED",
                        f"the TLS handshake with {peer} failed on a certificate: "
                        f"{remote.message}; check that both certificates come from this "
                        "network's CA, name the addresses used, and have not expired",
                        metadata={"peer": peer},
                    ) from None
                # Only the direct peer being unreachable is retried here. A peer's own
                # answer (it carries a reason, e.g. PEER_UNAVAILABLE for the node behind
                # it) was already retried at that hop: retrying it again would multiply.
                unreachable = not remote.reason and (
                    remote.code == grpc.StatusCode.UNAVAILABLE
                    or (own_wait and remote.code == grpc.StatusCode.DEADLINE_EXCEEDED)
                )
                if unreachable and attempt < attempts:
                    logs.event(log, "retrying", logging.WARNING, peer=peer, attempt=attempt)
                    await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
                    continue
                if unreachable and remote.code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    # Our own bounded wait for a reconnect ran out, not the caller's deadline.
                    remote = dataclasses.replace(remote, code=grpc.StatusCode.UNAVAILABLE)
                raise remote_to_domain(remote, peer=peer) from None
        raise AssertionError("unreachable: the loop returns or raises")

    async def close(self) -> None:
        for channel in [*self._channels.values(), *self._retired]:
            await channel.close(grace=None)
        self._channels.clear()
        self._stubs.clear()
        self._retired.clear()
