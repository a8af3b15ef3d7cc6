"""Pod IPs for the stand-in kubelet: addresses of this host that a Service can lead to.

The apiserver calls a webhook (or an aggregated API) Service at an IP from its
EndpointSlices (`--enable-aggregator-routing`), and EndpointSlice validation refuses
loopback, link-local and unspecified addresses. So a pod's IP must be a non-loopback
address that is local to this host, where the pod runner starts the pod's processes:

* by default every pod gets the node's address (`node_address()`: this host's own
  non-loopback IPv4, e.g. eth0's), as a `hostNetwork` pod would; pods then differ by port
  only (two replicas of one Deployment cannot both listen);
* when a private range is routed to this host itself (`routed_locally`; an admin's
  `ip route add local 10.244.0.0/16 dev lo` does it, nothing here changes the host's
  network), each pod gets its own address from it (`PodIPs`), kept for the pod's life and
  free again once the pod is gone.

Not for: network isolation (a process bound to 0.0.0.0 answers on every address), or
anything but the stand-in kubelet's bookkeeping (one process owns a pool).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
from collections.abc import Iterable

#: The range tried for per-pod addresses (kubeadm's and kind's default pod subnet).
DEFAULT_POD_CIDR = "10.244.0.0/16"
#: What pods get on a host without any other address (EndpointSlices will refuse it).
LOOPBACK = "127.0.0.1"
_SIOCGIFADDR = 0x8915


class PoolExhausted(RuntimeError):
    """Every address of the pool belongs to a live pod."""


def _usable_node_address(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def node_address() -> str:
    """This host's IPv4 address on its default route, else on any interface; LOOPBACK
    when it has none."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("198.51.100.1", 9))  # UDP: picks the source address, sends nothing
        addr = str(s.getsockname()[0])
        if _usable_node_address(addr):
            return addr
    for _, name in socket.if_nameindex():
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            req = struct.pack("256s", name.encode()[:15])
            addr = socket.inet_ntoa(fcntl.ioctl(s.fileno(), _SIOCGIFADDR, req)[20:24])
            if _usable_node_address(addr):
                return addr
    return LOOPBACK


def routed_locally(cidr: str, timeout: float = 0.5) -> bool:
    """Whether connections to addresses of `cidr` reach this host (a `local` route)."""
    net = ipaddress.IPv4Network(cidr)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("0.0.0.0", 0))
        server.listen(2)
        server.settimeout(timeout)
        port = server.getsockname()[1]
        for addr in (net.network_address + 1, net.broadcast_address - 1):
            try:
                with socket.create_connection((str(addr), port), timeout=timeout):
                    server.accept()[0].close()
            except OSError:
                return False
    return True


def _usable(addr: ipaddress.IPv4Address) -> bool:
    return int(addr) & 0xFF not in (0, 255)


class PodIPs:
    """Which pod (by uid) holds which address of `cidr`; next-fit, so a freed address is
    reused only after the rest of the range was handed out. Addresses ending in .0 or
    .255 and those in `reserved` are never handed out."""

    def __init__(self, cidr: str, reserved: Iterable[str] = ()) -> None:
        net = ipaddress.IPv4Network(cidr)
        self.first, self.last = net.network_address + 1, net.broadcast_address - 1
        self._reserved = {ipaddress.IPv4Address(r) for r in reserved}
        self._by_uid: dict[str, ipaddress.IPv4Address] = {}
        self._taken: set[ipaddress.IPv4Address] = set()
        self._next = self.first

    def __len__(self) -> int:
        return len(self._by_uid)

    def get(self, uid: str) -> str | None:
        """The address of pod `uid`, or None when it has none."""
        addr = self._by_uid.get(uid)
        return None if addr is None else str(addr)

    def assign(self, uid: str) -> str:
        """The address of pod `uid`, handing out a free one the first time."""
        held = self._by_uid.get(uid)
        if held is not None:
            return str(held)
        addr = self._next
        for _ in range(int(self.last) - int(self.first) + 1):
            if self._free(addr):
                self._hold(uid, addr)
                self._next = self._after(addr)
                return str(addr)
            addr = self._after(addr)
        raise PoolExhausted(f"no free pod IP between {self.first} and {self.last}")

    def adopt(self, uid: str, ip: str) -> bool:
        """Record that pod `uid` already holds `ip` (reported before a kubelet restart).

        False when `ip` is not one of the pool's or another pod holds it; the caller then
        leaves the pod's status alone.
        """
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            return False
        if self._by_uid.get(uid) == addr:
            return True
        if uid in self._by_uid or not self._free(addr):
            return False
        self._hold(uid, addr)
        return True

    def release(self, uid: str) -> None:
        """Pod `uid` is gone: its address is free again."""
        addr = self._by_uid.pop(uid, None)
        if addr is not None:
            self._taken.discard(addr)

    def retain(self, live: Iterable[str]) -> None:
        """Release the address of every pod not in `live` (after a fresh list)."""
        keep = set(live)
        for uid in [u for u in self._by_uid if u not in keep]:
            self.release(uid)

    def _free(self, addr: ipaddress.IPv4Address) -> bool:
        in_range = self.first <= addr <= self.last
        return in_range and _usable(addr) and addr not in self._taken and addr not in self._reserved

    def _after(self, addr: ipaddress.IPv4Address) -> ipaddress.IPv4Address:
        return addr + 1 if addr < self.last else self.first

    def _hold(self, uid: str, addr: ipaddress.IPv4Address) -> None:
        self._by_uid[uid] = addr
        self._taken.add(addr)
