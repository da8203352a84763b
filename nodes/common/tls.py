"""TLS credentials from the network CA: mutual TLS between nodes, server TLS for members.

A node's server credentials reload its certificate files when they change
(``suretynet pki renew`` writes new ones in place): each new TLS handshake after the change
presents the new certificate, with no restart. Connections already open keep theirs.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, cast

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nodes.common import logs
from nodes.common.config import TlsConfig

log = logging.getLogger(__name__)


def files_stamp(tls: TlsConfig) -> tuple[tuple[int, int], ...]:
    """What changes when any of the node's TLS files is replaced (mtime and inode)."""
    stamps = []
    for path in (tls.ca, tls.cert, tls.key):
        try:
            status = os.stat(path)
        except OSError:
            stamps.append((0, 0))
            continue
        stamps.append((status.st_mtime_ns, status.st_ino))
    return tuple(stamps)


def _pair_matches(cert_pem: bytes, key_pem: bytes) -> bool:
    """Whether the key belongs to the certificate (a renewal in progress may not yet)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, None)
    except ValueError:
        return False
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    return bool(
        cert.public_key().public_bytes(encoding, public)
        == key.public_key().public_bytes(encoding, public)
    )


class _Reloader:
    """gRPC's certificate fetcher: a new configuration when the files changed, else None."""

    def __init__(self, tls: TlsConfig, with_client_ca: bool) -> None:
        self._tls = tls
        self._with_client_ca = with_client_ca
        self._stamp = files_stamp(tls)
        # gRPC calls the fetcher from its own threads, one handshake at a time or not.
        self._lock = threading.Lock()

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        tls = self._tls
        return grpc.ssl_server_certificate_configuration(
            [(tls.key.read_bytes(), tls.cert.read_bytes())],
            root_certificates=tls.ca.read_bytes() if self._with_client_ca else None,
        )

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            stamp = files_stamp(self._tls)
            if stamp == self._stamp:
                return None
            try:
                cert, key = self._tls.cert.read_bytes(), self._tls.key.read_bytes()
            except OSError:
                return None
            if not _pair_matches(cert, key):
                return None  # Half-replaced: the next handshake looks again.
            self._stamp = stamp
            logs.event(log, "certificate reloaded", cert=str(self._tls.cert))
            return self.configuration()


def node_server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """The node port: a client certificate signed by the network CA is required."""
    reloader = _Reloader(tls, with_client_ca=True)
    # gRPC's stubs say the fetcher never returns None; its documentation says None means
    # "unchanged", which is what the reloader answers between renewals.
    return grpc.dynamic_ssl_server_credentials(
        reloader.configuration(), cast(Any, reloader), require_client_authentication=True
    )


def member_server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """The member port: the server proves itself; members prove themselves by session token."""
    reloader = _Reloader(tls, with_client_ca=False)
    return grpc.dynamic_ssl_server_credentials(
        reloader.configuration(), cast(Any, reloader), require_client_authentication=False
    )


def client_credentials(
    ca: bytes, cert: bytes | None = None, key: bytes | None = None
) -> grpc.ChannelCredentials:
    """Trusts only the network CA; presents ``cert``/``key`` when given (mutual TLS)."""
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )


def node_client_credentials(tls: TlsConfig) -> grpc.ChannelCredentials:
    return client_credentials(tls.ca.read_bytes(), tls.cert.read_bytes(), tls.key.read_bytes())
