"""Which device a workload drives: the Linux VM's block device for the target's LUN, or the container tools'
target argument.

`resolve_device` runs a small sh script on the VM that walks sysfs: the iSCSI sessions whose target name is the
IQN -> their SCSI disks (type 0) with the LUN number and the vendor (SANLAB for our target, IET for tgtd, LIO-ORG
for LIO) -> with more than one path, the dm device holding them (its /dev/mapper name). It waits (bounded) for
the expected number of paths and for the map, because udev and multipathd need a moment after login.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from lab.drivers.exec import Executor
from lab.topology.model import InitiatorKind, InitiatorNode, Topology
from lab.workloads.base import WorkloadError

VENDORS = ("SANLAB", "IET", "LIO-ORG")

_SCRIPT = r"""
iqn=$1; lun=$2; want=$3; tries=$4
i=0
while :; do
  disks=""; vendors=""
  for s in /sys/class/iscsi_session/session*; do
    [ -e "$s/targetname" ] || continue
    [ "$(cat "$s/targetname")" = "$iqn" ] || continue
    for d in "$s"/device/target*/*:*:*:*; do
      [ -e "$d/type" ] || continue
      [ "$(cat "$d/type")" = 0 ] || continue
      l=${d##*:}
      [ "$lun" = any ] || [ "$l" = "$lun" ] || continue
      for b in "$d"/block/*; do
        [ -e "$b" ] || continue
        disks="$disks ${b##*/}"
        vendors="$vendors $(tr -d ' ' < "$d/vendor")"
      done
    done
  done
  n=$(echo $disks | wc -w)
  map=""
  if [ "$n" -ge 1 ]; then
    first=$(echo $disks | cut -d' ' -f1)
    for h in /sys/block/$first/holders/*; do
      [ -e "$h/dm/name" ] && map=$(cat "$h/dm/name") && break
    done
  fi
  if [ "$n" -ge "$want" ] && { [ "$want" -le 1 ] || [ -n "$map" ]; }; then break; fi
  i=$((i + 1)); [ $i -lt "$tries" ] || break
  sleep 0.5
done
echo "DISKS=$(echo $disks)"
echo "VENDORS=$(echo $vendors)"
echo "MAP=$map"
"""


def parse_resolve(output: str) -> tuple[list[str], list[str], str]:
    """(disks, vendors, dm map name) from the script's last lines."""
    vals = dict(re.findall(r"^(DISKS|VENDORS|MAP)=(.*)$", output, re.M))
    return vals.get("DISKS", "").split(), vals.get("VENDORS", "").split(), vals.get("MAP", "").strip()


def resolve_device(
    executor: Executor,
    *,
    iqn: str,
    lun: int | None = None,
    paths: int = 1,
    vendors: Sequence[str] = VENDORS,
    wait_s: float = 30.0,
) -> str:
    """The VM's device for the target's LUN: /dev/mapper/NAME when `paths` > 1 (dm-multipath), else /dev/sdX.
    `lun` None: any disk LUN of the target (tgtd's LUN 0 is its controller, not a disk). Raises WorkloadError."""
    tries = max(1, int(wait_s / 0.5))
    args = [iqn, "any" if lun is None else str(lun), str(max(1, paths)), str(tries)]
    r = executor.run("sh -s " + shlex.join(args), timeout=wait_s + 30, stdin=_SCRIPT.encode())
    disks, found_vendors, dm = parse_resolve(r.output)
    if not disks:
        raise WorkloadError(f"no disk of {iqn} (LUN {lun if lun is not None else 'any'}) on {executor.name}")
    wrong = sorted({v for v in found_vendors if v not in vendors})
    if wrong:
        raise WorkloadError(
            f"{executor.name}: disks {disks} of {iqn} report vendor {wrong}, expected {list(vendors)}"
        )
    if paths > 1:
        if not dm:
            raise WorkloadError(
                f"{executor.name}: {len(disks)} paths {disks} of {iqn} but no dm-multipath map"
            )
        if len(disks) < paths:
            raise WorkloadError(f"{executor.name}: only {len(disks)} of {paths} paths {disks} in map {dm}")
        return f"/dev/mapper/{dm}"
    return f"/dev/{disks[0]}"


def container_device(topo: Topology, ini: InitiatorNode, *, path: int = 0) -> str:
    """The target argument (shell words) of the container tools: qemu-img's `--image-opts` (with the CHAP secret
    object) for qemu-driver initiators, `-i IQN URL` for libiscsi's iscsi-perf."""
    tgt = topo.target(ini.target)
    ip, port = topo.portal_addresses(ini)[path]
    lun = topo.lun_number(ini)
    chap = topo.chap_for(ini)
    if ini.kind is InitiatorKind.QEMU_DRIVER:
        opts = f"driver=iscsi,transport=tcp,portal={ip}:{port},target={tgt.iqn},lun={lun},initiator-name={ini.iqn}"
        secret = ""
        if chap:
            opts += f",user={chap.userid},password-secret=chap0"
            secret = f"--object {shlex.quote(f'secret,id=chap0,data={chap.password}')} "
        return f"{secret}--image-opts {shlex.quote(opts)}"
    if ini.kind is InitiatorKind.LIBISCSI:
        from urllib.parse import quote

        cred = f"{quote(chap.userid, safe='')}%{quote(chap.password, safe='')}@" if chap else ""
        return f"-i {shlex.quote(ini.iqn)} {shlex.quote(f'iscsi://{cred}{ip}:{port}/{tgt.iqn}/{lun}')}"
    raise ValueError(f"{ini.name}: no container device for initiator kind {ini.kind.value}")


def device_for(topo: Topology, ini: InitiatorNode, executor: Executor, *, wait_s: float = 30.0) -> str:
    """What the node's workloads drive: resolve_device for a Linux VM, container_device otherwise."""
    if ini.kind is InitiatorKind.LINUX_VM:
        tgt = topo.target(ini.target)
        return resolve_device(
            executor, iqn=tgt.iqn, lun=topo.lun_number(ini), paths=len(ini.paths), wait_s=wait_s
        )
    return container_device(topo, ini)
