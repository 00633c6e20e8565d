#!/bin/sh
# Install the Debian packages sanlab needs, only those missing (idempotent, quiet when nothing to do).
# Usage: scripts/setup-host.sh [extra-package ...]
set -eu
PKGS="python3-venv libiscsi-bin qemu-system-x86 qemu-block-extra qemu-utils ipxe-qemu open-iscsi busybox-static
      cpio kmod sg3-utils fdisk e2fsprogs tgt multipath-tools openssh-client iperf3 fio"
missing=""
for p in $PKGS "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
echo "setup: installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
# a fresh machine has stale or empty apt lists: update once, then install
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
# the host's own iscsid/tgtd services are not ours to run: the lab starts what it needs
for s in tgt iscsid open-iscsi; do
  command -v systemctl >/dev/null 2>&1 && $SUDO systemctl disable --now "$s" >/dev/null 2>&1 || true
done
echo "setup: Debian packages ready"
