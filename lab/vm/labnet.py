"""A lab address on the host that a qemu user-network guest can reach, for iSCSI discovery.

With `-netdev user` a guest reaches the host's loopback only as 10.0.2.2, but SendTargets answers with the
target's configured portal (e.g. 127.0.0.1:PORT), which the guest cannot reach. Instead the target listens on
a lab address from 198.18.0.0/15 (RFC 2544 benchmarking range) assigned to this host: slirp connects out from
the host, so the guest's connection to 198.18.0.1:PORT arrives at the host's portal, and discovery answers
with an address the guest can use. The address goes on a dummy interface `sanlab0`; when the kernel has no
dummy driver it goes on `lo` as a /32 instead. Only what this module created is removed afterwards.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

LAB_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")
DEFAULT_ADDRESS = "198.18.0.1"
DUMMY_IF = "sanlab0"


class LabNetUnavailable(RuntimeError):
    """The lab address cannot be set up here (no permission, no `ip`)."""


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabNetUnavailable(f"ip {' '.join(args)}: {exc}") from exc


def address_is_local(address: str) -> bool:
    """True if a socket can bind `address` (it is assigned to this host)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, 0))
        except OSError:
            return False
    return True


@contextmanager
def lab_host_address(address: str = DEFAULT_ADDRESS) -> Iterator[str]:
    """Make `address` (in 198.18.0.0/15) a local address for the duration; yields it."""
    if ipaddress.IPv4Address(address) not in LAB_NETWORK:
        raise ValueError(f"{address} is not in the lab range {LAB_NETWORK}")
    if address_is_local(address):
        yield address  # someone else set it up: use it, leave it
        return
    cidr = f"{address}/32"
    created_link = False
    added_on = ""
    errors = []
    link = _ip("link", "add", DUMMY_IF, "type", "dummy")
    if link.returncode == 0:
        created_link = True
        up = _ip("link", "set", DUMMY_IF, "up")
        add = _ip("addr", "add", cidr, "dev", DUMMY_IF)
        if up.returncode == 0 and add.returncode == 0:
            added_on = DUMMY_IF
        else:
            errors.append(f"{DUMMY_IF}: {up.stderr.strip()} {add.stderr.strip()}")
    else:
        errors.append(f"dummy interface: {link.stderr.strip()}")
    if not added_on:
        add = _ip("addr", "add", cidr, "dev", "lo")
        if add.returncode == 0:
            added_on = "lo"
        else:
            errors.append(f"lo: {add.stderr.strip()}")
    try:
        if not added_on or not address_is_local(address):
            raise LabNetUnavailable(f"cannot assign {cidr} on this host: {'; '.join(errors)}")
        yield address
    finally:
        if added_on == "lo":
            _ip("addr", "del", cidr, "dev", "lo")
        if created_link:
            _ip("link", "del", DUMMY_IF)
