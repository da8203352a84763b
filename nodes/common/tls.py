"""TLS credentials from the network CA: mutual TLS between nodes, server TLS for members."""

from __future__ import annotations

import grpc

from nodes.common.config import TlsConfig


def node_server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """The node port: a client certificate signed by the network CA is required."""
    return grpc.ssl_server_credentials(
        [(tls.key.read_bytes(), tls.cert.read_bytes())],
        root_certificates=tls.ca.read_bytes(),
        require_client_auth=True,
    )


def member_server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """The member port: the server proves itself; members prove themselves by session token."""
    return grpc.ssl_server_credentials([(tls.key.read_bytes(), tls.cert.read_bytes())])


def client_credentials(
    ca: bytes, cert: bytes | None = None, key: bytes | None = None
) -> grpc.ChannelCredentials:
    """Trusts only the network CA; presents ``cert``/``key`` when given (mutual TLS)."""
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )


def node_client_credentials(tls: TlsConfig) -> grpc.ChannelCredentials:
    return client_credentials(tls.ca.read_bytes(), tls.cert.read_bytes(), tls.key.read_bytes())
