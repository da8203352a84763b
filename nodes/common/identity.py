"""Who is calling: the entity a certificate names, and the IP address a call came from."""

from __future__ import annotations

import functools
import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

from cryptography import x509

from nodes.common.errors import DomainError, ErrorKind

URI_SCHEME = "suretynet"
NODE_ROLES = frozenset({"approval", "verification", "settlement", "retail", "marketplace"})
# `admin` certificates belong to operators and tools (grpcurl, the CLI), never to a node.
ROLES = NODE_ROLES | {"admin"}
ENTITY_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class EntityIdentity:
    """A certificate holder: its role and entity ID, as named by its URI SAN."""

    role: str
    entity_id: str

    @property
    def uri(self) -> str:
        return entity_uri(self.role, self.entity_id)


def validate_entity_id(entity_id: str) -> None:
    """Raises ValueError unless ``entity_id`` is lowercase letters, digits and dashes (1-63)."""
    if not ENTITY_ID_PATTERN.match(entity_id):
        raise ValueError(
            f"entity ID {entity_id!r} must be 1-63 lowercase letters, digits or dashes, "
            "starting with a letter or digit"
        )


def entity_uri(role: str, entity_id: str) -> str:
    return f"{URI_SCHEME}://{role}/{entity_id}"


# Every call's certificate names one of a few entities: parsed once each.
@functools.lru_cache(maxsize=1024)
def parse_entity_uri(uri: str) -> EntityIdentity:
    """Parses ``suretynet://ROLE/ENTITY``; raises DomainError(CERTIFICATE_IDENTITY_INVALID)."""
    parsed = urllib.parse.urlsplit(uri)
    entity_id = parsed.path.lstrip("/")
    if (
        parsed.scheme != URI_SCHEME
        or parsed.netloc not in ROLES
        or not ENTITY_ID_PATTERN.match(entity_id)
        or parsed.query
        or parsed.fragment
    ):
        raise DomainError(
            ErrorKind.UNAUTHENTICATED,
            "CERTIFICATE_IDENTITY_INVALID",
            f"certificate URI SAN {uri!r} is not suretynet://ROLE/ENTITY",
        )
    return EntityIdentity(role=parsed.netloc, entity_id=entity_id)


def identity_from_certificate_pem(pem: bytes) -> EntityIdentity:
    """Reads the single ``suretynet://`` URI SAN of a PEM certificate."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as error:
        raise DomainError(
            ErrorKind.UNAUTHENTICATED,
            "CERTIFICATE_IDENTITY_INVALID",
            "certificate has no subject alternative names",
        ) from error
    uris = [uri for uri in san.get_values_for_type(x509.UniformResourceIdentifier)]
    ours = [uri for uri in uris if uri.startswith(f"{URI_SCHEME}://")]
    if len(ours) != 1:
        raise DomainError(
            ErrorKind.UNAUTHENTICATED,
            "CERTIFICATE_IDENTITY_INVALID",
            f"certificate must carry exactly one {URI_SCHEME}:// URI SAN, found {len(ours)}",
        )
    return parse_entity_uri(ours[0])


@functools.lru_cache(maxsize=4096)
def parse_peer_ip(peer: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Extracts the IP of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``).

    IPv4-mapped IPv6 addresses (``::ffff:1.2.3.4``) are folded to their IPv4 form so that a
    dual-stack listener compares equal to a registry entry written as IPv4.
    """
    scheme, _, rest = peer.partition(":")
    if scheme == "ipv4":
        host = rest.rsplit(":", 1)[0]
    elif scheme == "ipv6":
        host = urllib.parse.unquote(rest).rsplit(":", 1)[0].strip("[]")
    else:
        raise ValueError(f"peer {peer!r} is not an IP peer")
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def replica_addresses(address: str) -> list[str]:
    """The addresses of a role's replicas in a configured address: ``host:port`` for one
    process, or ``ip:port,ip:port`` for several processes serving the same entity."""
    return [part.strip() for part in address.split(",") if part.strip()]


@functools.lru_cache(maxsize=4096)
def host_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Extracts the IP of a ``host:port`` or ``[v6]:port`` address, folding IPv4-mapped forms."""
    host = address.rsplit(":", 1)[0].strip("[]")
    ip = ipaddress.ip_address(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
