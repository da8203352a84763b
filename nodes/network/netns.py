"""Several hosts on one machine: one Linux network namespace and one IP per node.

gRPC Python cannot choose a client's source address, so on one host every node calls from
127.0.0.1 and address correlation cannot tell nodes apart. A ``NetnsLab`` builds a bridge
in the root namespace and, per host, a namespace joined to it by a veth pair, each with its
own address in a private /24 that exists only inside this machine. Processes started with
``command(host, argv)`` run inside their host's namespace, so their calls leave from its IP.

Needs root (``ip netns``). ``teardown`` removes every namespace, veth and the bridge, and
is safe to call more than once; use the lab as a context manager so it runs on failure too.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

# 10.231.N.0/24: N is random per lab so concurrent runs on one machine do not collide.
SUBNET_PREFIX = "10.231"
MAX_HOSTS = 200


class NetnsUnavailableError(RuntimeError):
    """This process cannot create network namespaces (not root, or no iproute2)."""


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def netns_available() -> bool:
    """True when this process may create namespaces (root with a working ``ip netns``)."""
    if os.geteuid() != 0:
        return False
    try:
        result = subprocess.run(["ip", "netns", "list"], capture_output=True, check=False)
    except FileNotFoundError:
        return False
    return result.returncode == 0


@dataclass
class NetnsLab:
    """A bridge plus one namespace per host; ``hosts`` maps host name to its IP."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    subnet_octet: int = field(default_factory=lambda: 16 + secrets.randbelow(224))
    hosts: dict[str, str] = field(default_factory=dict)
    _namespaces: dict[str, str] = field(default_factory=dict)
    # Namespaces a moved host left behind: no name maps to them, teardown still deletes them.
    _left: list[str] = field(default_factory=list)
    _bridge_up: bool = False

    @property
    def bridge(self) -> str:
        return f"snbr{self.tag}"

    @property
    def gateway_ip(self) -> str:
        """The root namespace's address on the bridge: where the operator's tools call from."""
        return f"{SUBNET_PREFIX}.{self.subnet_octet}.1"

    def __enter__(self) -> NetnsLab:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.teardown()

    def start(self) -> None:
        if not netns_available():
            raise NetnsUnavailableError("network namespaces need root and iproute2 ('ip netns')")
        _ip("link", "add", self.bridge, "type", "bridge")
        self._bridge_up = True
        _ip("addr", "add", f"{self.gateway_ip}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add_host(self, name: str) -> str:
        """Creates a namespace for ``name`` with the next free IP; returns that IP."""
        if name in self.hosts:
            return self.hosts[name]
        index = len(self.hosts) + 10
        if index >= MAX_HOSTS:
            raise RuntimeError(f"a lab holds at most {MAX_HOSTS - 10} hosts")
        namespace = f"sn{self.tag}-{index}"
        host_veth, peer_veth = f"snv{self.tag}{index}", f"snp{self.tag}{index}"
        ip = f"{SUBNET_PREFIX}.{self.subnet_octet}.{index}"
        _ip("netns", "add", namespace)
        self._namespaces[name] = namespace
        _ip("link", "add", host_veth, "type", "veth", "peer", "name", peer_veth)
        _ip("link", "set", peer_veth, "netns", namespace)
        _ip("link", "set", host_veth, "master", self.bridge)
        _ip("link", "set", host_veth, "up")
        _ip("-n", namespace, "addr", "add", f"{ip}/24", "dev", peer_veth)
        _ip("-n", namespace, "link", "set", peer_veth, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        self.hosts[name] = ip
        return ip

    def move_host(self, name: str) -> str:
        """Gives ``name`` a new namespace and IP, as if its node moved to another machine.

        Processes started for ``name`` from now on run in the new namespace; the old one
        stays (empty once its processes end) until ``teardown``. Returns the new IP.
        """
        moved = f"{name}~{len(self.hosts)}"
        ip = self.add_host(moved)
        self._left.append(self._namespaces[name])
        self._namespaces[name] = self._namespaces[moved]
        self.hosts[name] = ip
        return ip

    def namespace(self, name: str) -> str:
        return self._namespaces[name]

    def command(self, name: str, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped to run inside ``name``'s namespace."""
        return ["ip", "netns", "exec", self._namespaces[name], *argv]

    def teardown(self) -> None:
        """Deletes every namespace (their veth ends go with them) and the bridge."""
        for namespace in {*self._namespaces.values(), *self._left}:
            # Processes still inside keep a namespace alive only as long as they run;
            # deleting the name is what frees it for the next run.
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        self._namespaces.clear()
        self._left.clear()
        if self._bridge_up:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
            self._bridge_up = False
