#!/bin/sh
# /init of the sanlab lab VM (busybox initramfs built by lab/vm/initramfs.py).
#
# The job comes from the kernel command line as sanlab.<key>=<value> words (values without spaces):
#   sanlab.job=initiator|shell|none      what to do (default none: report and power off)
#   sanlab.net=ADDR/PREFIX:GATEWAY       eth0 address (default 10.0.2.15/24:10.0.2.2, qemu's user network)
#   sanlab.initiator=IQN                 our initiator name (/etc/iscsi/initiatorname.iscsi)
#   sanlab.portal=IP:PORT                the target portal (discovery and login)
#   sanlab.iqn=IQN                       the target to log in to
#   sanlab.lun=N                         the LUN to work on (default 0)
#   sanlab.steps=a,b,...                 initiator steps, in order: discover login inq fs raw logout
#   sanlab.chap=USER:SECRET              CHAP for the session (initiator -> target)
#   sanlab.mchap=USER:SECRET             mutual CHAP: the target's name and secret (target -> initiator)
#   sanlab.dchap=USER:SECRET             CHAP for the SendTargets discovery session
#   sanlab.dmchap=USER:SECRET            mutual CHAP for discovery
#   sanlab.part_mib=N                    size of the ext4 partition (default 48, starts at 1 MiB)
#   sanlab.raw_mib=N                     offset in MiB of the raw O_DIRECT pattern write (default 64)
#   job=multipath and job=pr: see lab/vm/multipath_job.sh (two portals, dm-multipath + scsi_dh_alua,
#   sg_rtpg, sg_persist / mpathpersist)
#
# Results go to the console as lines "SANLAB <key>=<value>" (lab/vm/qemu.py parses them):
# step_<name>=ok|fail, t_<name>=<seconds>, details per step, then result=ok|fail and done=1.
# Every wait is bounded; the VM powers off at the end (qemu runs with -no-reboot).

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /run/lock/iscsi /var/lock /tmp /mnt
mount -t devpts devpts /dev/pts

r() { echo "SANLAB $1=$2"; }
up() { cut -d' ' -f1 /proc/uptime; }
elapsed() { awk -v a="$1" -v b="$(up)" 'BEGIN { printf "%.2f", b - a }'; }

RESULT=ok
finish() {
    if [ "$RESULT" != ok ]; then
        dmesg | tail -n 40 | sed 's/^/GUEST dmesg: /'
        [ -f /tmp/iscsid.log ] && tail -n 40 /tmp/iscsid.log | sed 's/^/GUEST iscsid: /'
    fi
    r result "$RESULT"
    r uptime "$(up)"
    r done 1
    sync
    [ "$SL_job" = shell ] && exec setsid cttyhack sh
    poweroff -f
}
fail() {  # fail STEP MESSAGE: report and stop the job
    r "step_$1" fail
    r error "$1: $2"
    RESULT=fail
    finish
}

# ---- parse sanlab.* words from the kernel command line (keys restricted to [a-z0-9_])
for word in $(cat /proc/cmdline); do
    case "$word" in
        sanlab.*=*)
            key=${word%%=*}; key=${key#sanlab.}; val=${word#*=}
            case "$key" in *[!a-z0-9_]*) continue ;; esac
            eval "SL_$key=\$val"
            ;;
    esac
done
SL_job=${SL_job:-none}
SL_lun=${SL_lun:-0}
SL_part_mib=${SL_part_mib:-48}
SL_raw_mib=${SL_raw_mib:-64}
r boot "$(up)"
r kernel "$(uname -r)"

# ---- modules and network
for m in virtio_pci virtio_net crc32c_generic crc32c_intel scsi_transport_iscsi libiscsi libiscsi_tcp iscsi_tcp \
         sd_mod sg ext4; do
    modprobe "$m" 2>/dev/null || echo "GUEST modprobe $m failed"
done
ip link set lo up
net=${SL_net:-10.0.2.15/24:10.0.2.2}
i=0
while ! ip link show eth0 >/dev/null 2>&1 && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
ip link set eth0 up && ip addr add "${net%%:*}" dev eth0 && ip route add default via "${net#*:}" dev eth0 \
    && r net "${net%%:*}" || r net fail

[ "$SL_job" = multipath ] && . /multipath_job.sh
[ "$SL_job" = pr ] && . /multipath_job.sh
[ "$SL_job" = initiator ] || finish

# ---- initiator job
for need in portal iqn initiator steps; do
    eval "v=\$SL_$need"
    [ -n "$v" ] || fail setup "sanlab.$need missing"
done
echo "InitiatorName=$SL_initiator" >/etc/iscsi/initiatorname.iscsi
iscsid -f >/tmp/iscsid.log 2>&1 &
i=0
while [ $i -lt 50 ]; do  # iscsid answers: 0 = sessions, 21 = "No active sessions"
    iscsiadm -m session >/dev/null 2>&1
    rc=$?
    [ $rc -eq 0 ] || [ $rc -eq 21 ] && break
    sleep 0.1; i=$((i + 1))
done
P=$SL_portal
T=$SL_iqn
DISK=""

node_set() { iscsiadm -m node -T "$T" -p "$P" -o update -n "$1" -v "$2" >/dev/null 2>&1; }
disc_set() { iscsiadm -m discoverydb -t sendtargets -p "$P" -o update -n "$1" -v "$2" >/dev/null 2>&1; }

step_discover() {
    iscsiadm -m discoverydb -t sendtargets -p "$P" -o new >/dev/null 2>&1
    if [ -n "$SL_dchap" ]; then
        disc_set discovery.sendtargets.auth.authmethod CHAP
        disc_set discovery.sendtargets.auth.username "${SL_dchap%%:*}"
        disc_set discovery.sendtargets.auth.password "${SL_dchap#*:}"
        if [ -n "$SL_dmchap" ]; then
            disc_set discovery.sendtargets.auth.username_in "${SL_dmchap%%:*}"
            disc_set discovery.sendtargets.auth.password_in "${SL_dmchap#*:}"
        fi
    fi
    out=$(iscsiadm -m discoverydb -t sendtargets -p "$P" --discover 2>&1)
    rc=$?
    echo "$out" | sed 's/^/GUEST discovery: /'
    [ $rc -eq 0 ] || fail discover "iscsiadm --discover exited $rc"
    echo "$out" | grep -E '^[0-9]' | while read -r line; do r discovered "$line"; done
    echo "$out" | grep -q " $T\$" || fail discover "target $T not in SendTargets answer"
}

step_login() {
    # discovery created the node record; without it, create one
    iscsiadm -m node -T "$T" -p "$P" >/dev/null 2>&1 || iscsiadm -m node -o new -T "$T" -p "$P" >/dev/null 2>&1
    if [ -n "$SL_chap" ]; then
        node_set node.session.auth.authmethod CHAP
        node_set node.session.auth.username "${SL_chap%%:*}"
        node_set node.session.auth.password "${SL_chap#*:}"
        if [ -n "$SL_mchap" ]; then
            node_set node.session.auth.username_in "${SL_mchap%%:*}"
            node_set node.session.auth.password_in "${SL_mchap#*:}"
        fi
    fi
    out=$(iscsiadm -m node -T "$T" -p "$P" --login 2>&1)
    rc=$?
    echo "$out" | sed 's/^/GUEST login: /'
    [ $rc -eq 0 ] || fail login "iscsiadm --login exited $rc"
    r sessions "$(iscsiadm -m session 2>/dev/null | wc -l)"
    # the disk of our LUN: /sys/class/scsi_disk/H:C:T:LUN/device/block/sdX (bounded wait: 20 s)
    i=0
    while [ $i -lt 200 ]; do
        for b in /sys/class/scsi_disk/*:*:*:"$SL_lun"/device/block/*; do
            [ -e "$b" ] && DISK=/dev/${b##*/}
        done
        [ -n "$DISK" ] && [ -b "$DISK" ] && break
        sleep 0.1; i=$((i + 1))
    done
    [ -b "$DISK" ] || fail login "no block device for LUN $SL_lun after 20 s"
    r disk "$DISK"
}

step_inq() {
    out=$(sg_inq "$DISK" 2>&1) || fail inq "sg_inq exited $?"
    echo "$out" | sed 's/^/GUEST sg_inq: /'
    r inq_vendor "$(echo "$out" | sed -n 's/^ *Vendor identification: *//p' | sed 's/ *$//')"
    r inq_product "$(echo "$out" | sed -n 's/^ *Product identification: *//p' | sed 's/ *$//')"
    r inq_revision "$(echo "$out" | sed -n 's/^ *Product revision level: *//p' | sed 's/ *$//')"
    r inq_serial "$(echo "$out" | sed -n 's/^ *Unit serial number: *//p' | sed 's/ *$//')"
    r inq_pdt "$(echo "$out" | sed -n 's/.*Peripheral device type: *//p' | head -n 1)"
    out=$(sg_readcap "$DISK" 2>&1) || fail inq "sg_readcap exited $?"
    echo "$out" | sed 's/^/GUEST sg_readcap: /'
    r readcap_blocks "$(echo "$out" | sed -n 's/.*Number of logical blocks=\([0-9]*\).*/\1/p')"
    r readcap_block_length "$(echo "$out" | sed -n 's/.*Logical block length=\([0-9]*\).*/\1/p')"
    out=$(sg_readcap --16 "$DISK" 2>&1) || fail inq "sg_readcap --16 exited $?"
    echo "$out" | sed 's/^/GUEST sg_readcap16: /'
    r readcap16_blocks "$(echo "$out" | sed -n 's/.*Number of logical blocks=\([0-9]*\).*/\1/p')"
    r block_size_sysfs "$(cat /sys/block/${DISK#/dev/}/queue/logical_block_size)"
}

md5() { md5sum "$1" | cut -c1-32; }

step_fs() {
    out=$(printf 'label: dos\nstart=2048, size=%d, type=83\n' $((SL_part_mib * 2048)) | sfdisk -q "$DISK" 2>&1) \
        || fail fs "sfdisk: $out"
    PART=${DISK}1
    i=0
    while [ ! -b "$PART" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    [ -b "$PART" ] || { blockdev --rereadpt "$DISK"; sleep 1; }
    [ -b "$PART" ] || fail fs "partition $PART did not appear"
    r partition "$PART"
    r partition_sectors "$(cat /sys/class/block/${PART#/dev/}/size)"
    out=$(mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$PART" 2>&1) || fail fs "mkfs.ext4: $out"
    mount -t ext4 "$PART" /mnt || fail fs "mount after mkfs failed"
    r mkfs ok
    mkdir -p /mnt/data
    cp /pattern.bin /mnt/data/pattern.bin
    dd if=/pattern.bin of=/mnt/data/half.bin bs=65536 skip=8 count=24 2>/dev/null
    : >/tmp/sums.before
    for f in pattern.bin half.bin; do
        echo "$f $(md5 /mnt/data/$f)" >>/tmp/sums.before
        r "fs_md5_$(echo $f | tr . _)" "$(md5 /mnt/data/$f)"
    done
    sync
    umount /mnt || fail fs "umount failed"
    echo 3 >/proc/sys/vm/drop_caches
    mount -t ext4 "$PART" /mnt || fail fs "second mount failed"
    : >/tmp/sums.after
    for f in pattern.bin half.bin; do echo "$f $(md5 /mnt/data/$f)" >>/tmp/sums.after; done
    umount /mnt || fail fs "final umount failed"
    cmp -s /tmp/sums.before /tmp/sums.after || fail fs "checksums differ after remount"
    r fs_verify ok
}

step_raw() {
    mib=$(($(wc -c </pattern.bin) / 1048576))
    dd if=/pattern.bin of="$DISK" bs=1048576 seek="$SL_raw_mib" oflag=direct conv=fsync 2>/dev/null \
        || fail raw "O_DIRECT write failed"
    echo 3 >/proc/sys/vm/drop_caches
    dd if="$DISK" of=/tmp/raw.bin bs=1048576 skip="$SL_raw_mib" count="$mib" iflag=direct 2>/dev/null \
        || fail raw "O_DIRECT read failed"
    r raw_md5_written "$(md5 /pattern.bin)"
    r raw_md5_read "$(md5 /tmp/raw.bin)"
    cmp -s /pattern.bin /tmp/raw.bin || fail raw "read-back differs from what was written"
    r raw_verify ok
}

step_logout() {
    out=$(iscsiadm -m node -T "$T" -p "$P" --logout 2>&1)
    rc=$?
    echo "$out" | sed 's/^/GUEST logout: /'
    [ $rc -eq 0 ] || fail logout "iscsiadm --logout exited $rc"
    r sessions_after_logout "$(iscsiadm -m session 2>/dev/null | wc -l)"
}

for step in $(echo "$SL_steps" | tr ',' ' '); do
    case "$step" in
        discover | login | inq | fs | raw | logout) ;;
        *) fail setup "unknown step $step" ;;
    esac
    t0=$(up)
    "step_$step"
    r "t_$step" "$(elapsed "$t0")"
    r "step_$step" ok
done
finish
