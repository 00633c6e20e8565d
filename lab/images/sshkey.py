"""The lab's SSH key: generated once per machine, kept in the cache, baked into every VM image.

Ansible (and the tests) log in to the lab VMs as root with this key; nothing else is accepted there.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from lab.vm.cache import cache_root


class SshKeyError(RuntimeError):
    """ssh-keygen is missing or failed."""


def lab_key_path() -> Path:
    """Private key path (`<cache>/ssh/id_ed25519`); the public key is beside it with `.pub`."""
    return cache_root() / "ssh" / "id_ed25519"


def ensure_lab_key() -> Path:
    """Return the private key path, generating an ed25519 key pair on first use."""
    key = lab_key_path()
    pub = key.with_suffix(".pub")
    if key.is_file() and pub.is_file():
        return key
    key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for p in (key, pub):
        p.unlink(missing_ok=True)
    try:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sanlab-lab", "-f", str(key)],
            capture_output=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SshKeyError(f"cannot generate the lab SSH key {key}: {exc}") from exc
    key.chmod(0o600)
    return key


def public_key_text() -> str:
    return ensure_lab_key().with_suffix(".pub").read_text().strip()


def public_key_fingerprint() -> str:
    """sha256 of the public key line (part of every VM image's hash)."""
    return hashlib.sha256(public_key_text().encode()).hexdigest()
