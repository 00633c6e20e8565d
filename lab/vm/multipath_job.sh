# Sourced by /init (guest_init.sh) for sanlab.job=multipath and sanlab.job=pr. Uses r/fail/finish/up/elapsed.
#
#   sanlab.portals=IP:PORT,IP:PORT   the two target portals (one TPG each)
#   sanlab.iqn=IQN  sanlab.initiator=IQN
#   sanlab.iters=N                   I/O rounds per phase (1 MiB O_DIRECT write + read + compare each; default 8)
#   sanlab.initiator2=IQN            job=pr: the second initiator name (a second iface on the same portal)
#
# job=multipath: log in through both portals, load scsi_dh_alua + dm-multipath, build one map (group_by_prio,
# prio alua, failback immediate), report sg_rtpg of each path, run phase-1 I/O and report per-path counts
# (/sys/block/sdX/stat), print "SANLAB phase1_done=1" and keep I/O running while the host swaps the ALUA
# states; wait until RTPG shows the swap and the active path group moves, run phase-2 I/O, report counts and
# every I/O error. With sanlab.mpathpersist=1, mpathpersist register/reserve/read/release through the map.
# job=pr: two sessions on the first portal with different initiator names (iscsiadm ifaces), then sg_persist
# register / reserve / read keys / read reservation / preempt / release between them.

for m in dm-mod dm-multipath dm-round-robin dm-service-time scsi_dh_alua; do
    modprobe "$m" 2>/dev/null || echo "GUEST modprobe $m failed"
done
export DM_DISABLE_UDEV=1
SL_iters=${SL_iters:-8}
for need in portals iqn initiator; do
    eval "v=\$SL_$need"
    [ -n "$v" ] || fail setup "sanlab.$need missing"
done
echo "InitiatorName=$SL_initiator" >/etc/iscsi/initiatorname.iscsi
iscsid -f >/tmp/iscsid.log 2>&1 &
i=0
while [ $i -lt 50 ]; do
    iscsiadm -m session >/dev/null 2>&1
    rc=$?
    [ $rc -eq 0 ] || [ $rc -eq 21 ] && break
    sleep 0.1; i=$((i + 1))
done
T=$SL_iqn
P1=${SL_portals%%,*}
P2=${SL_portals#*,}

login() {  # login PORTAL [IFACE]
    ifarg=""
    [ -n "$2" ] && ifarg="-I $2"
    iscsiadm -m node -o new -T "$T" -p "$1" $ifarg >/dev/null 2>&1
    out=$(iscsiadm -m node -T "$T" -p "$1" $ifarg --login 2>&1)
    rc=$?
    echo "$out" | sed 's/^/GUEST login: /'
    [ $rc -eq 0 ] || fail login "login to $1 ${2:-} exited $rc"
}

disks() {  # the sd devices of LUN 0, one per line
    for b in /sys/class/scsi_disk/*:*:*:0/device/block/*; do
        [ -e "$b" ] && echo "${b##*/}"
    done
}

wait_disks() {  # wait_disks N
    i=0
    while [ "$(disks | wc -l)" -lt "$1" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    [ "$(disks | wc -l)" -ge "$1" ] || fail login "$(disks | wc -l) of $1 disks after 30 s"
}

rtpi_of() { sg_vpd -p di "/dev/$1" 2>/dev/null | sed -n 's/.*[Rr]elative target port: *0x\([0-9a-fA-F]*\).*/\1/p' | head -n 1; }
ios_of() { awk '{ print $1 + $5 }' "/sys/block/$1/stat"; }  # reads + writes completed

rtpg_states() {  # "ID:STATE ..." from sg_rtpg --decode (retried: a unit attention may answer the first try)
    for _try in 1 2 3; do
        _s=$(rtpg_once "$1")
        [ -n "$_s" ] && break
    done
    echo "$_s"
}
rtpg_once() {
    sg_rtpg -d "/dev/$1" 2>/dev/null | awk '
        /target port group id/ { split($0, a, ":"); split(a[2], b, ","); gsub(/ /, "", b[1]); id = b[1] }
        /asymmetric access state/ { s = $0; sub(/.*\(/, "", s); sub(/\).*/, "", s); printf "%s:%s ", id, s }'
}

# ------------------------------------------------------------------------------------------------ job=pr
if [ "$SL_job" = pr ]; then
    [ -n "$SL_initiator2" ] || fail setup "sanlab.initiator2 missing"
    for ifc in ifa ifb; do
        iscsiadm -m iface -I $ifc -o new >/dev/null 2>&1 || fail setup "iface $ifc"
    done
    iscsiadm -m iface -I ifa -o update -n iface.initiatorname -v "$SL_initiator" >/dev/null
    iscsiadm -m iface -I ifb -o update -n iface.initiatorname -v "$SL_initiator2" >/dev/null
    login "$P1" ifa
    login "$P1" ifb
    wait_disks 2
    r step_login ok
    A=/dev/$(disks | sed -n 1p)
    B=/dev/$(disks | sed -n 2p)
    pr() {  # pr NAME DEV ARGS...: run sg_persist, report its exit status and output
        name=$1; dev=$2; shift 2
        out=$(sg_persist "$@" "$dev" 2>&1)
        rc=$?
        echo "$out" | sed "s/^/GUEST $name: /"
        r "pr_${name}_rc" "$rc"
        r "pr_${name}" "$(echo "$out" | tr '\n' '|' | tr -s ' ')"
    }
    # which disk is which initiator: register A's key through the first disk, read it back from both
    pr a_register "$A" --out --register --param-sark=0xaaaa
    pr b_register "$B" --out --register --param-sark=0xbbbb
    pr a_keys "$A" --in --read-keys
    pr a_reserve "$A" --out --reserve --param-rk=0xaaaa --prout-type=5
    pr b_reservation "$B" --in --read-reservation
    pr b_write "$B" --in --read-keys
    dd if=/pattern.bin of="$B" bs=4096 count=1 oflag=direct 2>/dev/null
    r pr_b_write_rc "$?"
    dd if=/pattern.bin of="$A" bs=4096 count=1 oflag=direct 2>/dev/null
    r pr_a_write_rc "$?"
    pr b_preempt "$B" --out --preempt --param-rk=0xbbbb --param-sark=0xaaaa --prout-type=5
    pr a_ua "$A" --in --read-keys  # the preempted initiator first gets REGISTRATIONS PREEMPTED
    pr a_keys_after "$A" --in --read-keys
    pr b_reservation_after "$B" --in --read-reservation
    pr b_release "$B" --out --release --param-rk=0xbbbb --prout-type=5
    pr b_reservation_released "$B" --in --read-reservation
    pr b_clear "$B" --out --clear --param-rk=0xbbbb
    r step_pr ok
    finish
fi

# ------------------------------------------------------------------------------------------------ job=multipath
login "$P1"
login "$P2"
wait_disks 2
r step_login ok
for d in $(disks); do
    r "path_$d" "$(rtpi_of "$d")"
    r "dh_$d" "$(cat /sys/block/$d/device/dh_state 2>/dev/null)"
    sg_rtpg -d "/dev/$d" 2>&1 | sed "s/^/GUEST sg_rtpg $d: /"
    r "rtpg_$d" "$(rtpg_states "$d")"
done

# multipath-tools only sees block devices udev has initialized: run udevd (udevadm is systemd-udevd when
# called by that name) without rules, replay the add events and wait for them
if command -v udevadm >/dev/null 2>&1; then
    ln -sf "$(command -v udevadm)" /sbin/systemd-udevd
    mkdir -p /run/udev
    /sbin/systemd-udevd --daemon >/tmp/udevd.log 2>&1
    udevadm trigger --action=add --subsystem-match=block >/dev/null 2>&1
    udevadm settle --timeout=20 >/dev/null 2>&1
    r udevd "$(pidof systemd-udevd >/dev/null && echo running || echo failed)"
fi
mkdir -p /etc/multipath
cat >/etc/multipath.conf <<'EOF'
defaults {
    user_friendly_names no
    find_multipaths no
    path_grouping_policy group_by_prio
    prio alua
    failback immediate
    path_checker tur
    polling_interval 1
    no_path_retry 30
    retrigger_tries 0
    detect_prio no
}
blacklist {
    devnode "^(vd|ram|loop|fd|md|sr)"
}
EOF
out=$(multipath -v3 2>&1)
r multipath_rc "$?"
ls -l /dev/mapper 2>&1 | sed 's/^/GUEST dev-mapper: /'
echo "$out" | grep -iE 'sd[a-z]|uid|wwid|error|fail|creat|reject|blacklist|fatal|cannot' | tail -n 60 | sed 's/^/GUEST multipath: /'
echo "$out" | head -n 15 | sed 's/^/GUEST multipath-head: /'
MAP=$(dmsetup ls --target multipath 2>/dev/null | awk 'NR == 1 && $1 != "No" { print $1 }')
[ -n "$MAP" ] || fail multipath "no multipath map"
DEV=/dev/mapper/$MAP
i=0
while [ ! -b "$DEV" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
[ -b "$DEV" ] || fail multipath "$DEV missing"
if command -v multipathd >/dev/null 2>&1; then
    multipathd -d -s -v2 >/tmp/multipathd.log 2>&1 &
    r multipathd started
fi
sleep 2
multipath -ll 2>&1 | sed 's/^/GUEST multipath -ll: /'
active_path() {
    multipath -ll 2>/dev/null | awk '/status=active/ { a = 1; next } /status=/ { a = 0 }
        a { for (i = 1; i <= NF; i++) if ($i ~ /^sd[a-z]+$/) { print $i; exit } }'
}
r map "$MAP"
r map_paths "$(multipath -ll 2>/dev/null | grep -cE ' sd[a-z]+ ')"
r step_multipath ok

i=0
while [ $i -lt 4 ]; do
    dd if=/pattern.bin of=/tmp/chunk$i bs=1048576 count=1 skip=$i 2>/dev/null
    i=$((i + 1))
done
: >/tmp/io_errors
io_round() {  # io_round N: N x (1 MiB O_DIRECT write, read back, compare); failures go to /tmp/io_errors
    n=0
    while [ $n -lt "$1" ]; do
        c=$((n % 4)); off=$((8 + (n % 16)))
        dd if=/tmp/chunk$c of="$DEV" bs=1048576 count=1 seek=$off oflag=direct 2>/dev/null \
            || echo "write $off" >>/tmp/io_errors
        dd if="$DEV" of=/tmp/rd.bin bs=1048576 count=1 skip=$off iflag=direct 2>/dev/null \
            || echo "read $off" >>/tmp/io_errors
        cmp -s /tmp/rd.bin /tmp/chunk$c || echo "compare $off" >>/tmp/io_errors
        n=$((n + 1))
    done
}
counts() { for d in $(disks); do printf '%s:%s ' "$d" "$(ios_of "$d")"; done; }
delta() {  # delta "BEFORE" "AFTER" -> "sdX:N sdY:M"
    for pair in $2; do
        d=${pair%%:*}; a=${pair#*:}
        b=$(echo "$1" | tr ' ' '\n' | sed -n "s/^$d://p")
        printf '%s:%s ' "$d" $((a - ${b:-0}))
    done
}

mp_steps() {
    [ "$SL_mpathpersist" = 1 ] || return 0
        mp() {
            name=$1; shift
            out=$(mpathpersist "$@" "$DEV" 2>&1)
            rc=$?
            echo "$out" | sed "s/^/GUEST mpathpersist $name: /"
            r "mp_${name}_rc" "$rc"
            r "mp_${name}" "$(echo "$out" | tr '\n' '|' | tr -s ' ')"
        }
        mp register --out --register --param-sark=0x1234
        mp keys --in --read-keys
        mp reserve --out --reserve --param-rk=0x1234 --prout-type=5
        mp reservation --in --read-reservation
        mp release --out --release --param-rk=0x1234 --prout-type=5
        mp unregister --out --register --param-rk=0x1234 --param-sark=0
}

c0=$(counts)
t0=$(up)
io_round "$SL_iters"
c1=$(counts)
r t_phase1 "$(elapsed "$t0")"
r io_phase1 "$(delta "$c0" "$c1")"
r counts_phase1 "$c1"  # since boot: what the target's per-group counters must match
ACTIVE_BEFORE=$(active_path)  # a path group is active once I/O has run
r active_before "$ACTIVE_BEFORE"
# the states before the swap, read before phase1_done: the host swaps as soon as it sees that line
first=$(disks | sed -n 1p)
before=$(rtpg_states "$first")
r rtpg_before "$before"
r phase1_done 1
t_done=$(up)

# keep I/O going while the host swaps the states (sanlab.swap=0: no swap expected, skip to the end)
if [ "${SL_swap:-1}" = 0 ]; then
    r io_errors "$(wc -l </tmp/io_errors)"
    [ "$(wc -l </tmp/io_errors)" -eq 0 ] || RESULT=fail
    r step_io ok
    mp_steps
    finish
fi
rm -f /tmp/stop_io
( while [ ! -f /tmp/stop_io ]; do io_round 1; echo x >>/tmp/bg_rounds; done ) &
BG=$!
before_s() {  # before_s T0 SECONDS: true while less than SECONDS of uptime passed since T0
    awk -v a="$1" -v b="$(up)" -v s="$2" 'BEGIN { exit !(b - a < s) }'
}
i=0
now_states=$before
seen_transitioning=0
while [ $i -lt 600 ] && before_s "$t_done" 60; do  # until the states changed and no group is transitioning
    now_states=$(rtpg_states "$first")
    case "$now_states" in *transitioning*) seen_transitioning=1; now_states=$before ;; esac
    [ -n "$now_states" ] && [ "$now_states" != "$before" ] && break
    sleep 0.1; i=$((i + 1))
done
r rtpg_after "$now_states"
r rtpg_seen_transitioning "$seen_transitioning"
r t_rtpg "$(elapsed "$t_done")"
[ -n "$now_states" ] && [ "$now_states" != "$before" ] || fail swap "RTPG did not change within 60 s"
i=0
switch=none
while [ $i -lt 300 ] && before_s "$t_done" 90; do
    now=$(active_path)
    [ -n "$now" ] && [ "$now" != "$ACTIVE_BEFORE" ] && { switch=daemon; break; }
    sleep 0.1; i=$((i + 1))
done
if [ $switch = none ]; then
    multipath -r >/dev/null 2>&1
    sleep 1
    [ "$(active_path)" != "$ACTIVE_BEFORE" ] && switch=reload
fi
r t_switch "$(elapsed "$t_done")"
multipathd -k"show paths" 2>&1 | sed 's/^/GUEST multipathd show paths: /'
r mpath_switch "$switch"
r active_after "$(active_path)"
multipath -ll 2>&1 | sed 's/^/GUEST multipath -ll after: /'
touch /tmp/stop_io
wait $BG
r bg_rounds "$(wc -l </tmp/bg_rounds 2>/dev/null || echo 0)"

c2=$(counts)
t0=$(up)
io_round "$SL_iters"
c3=$(counts)
r t_phase2 "$(elapsed "$t0")"
r io_phase2 "$(delta "$c2" "$c3")"
r counts_end "$c3"
# requests a path failed (e.g. NOT READY from a standby port) count in its stat but not at the target
r ioerrs_by_path "$(for d in $(disks); do printf '%s:%s ' "$d" "$(dmesg | grep -c "I/O error, dev $d,")"; done)"
r io_errors "$(wc -l </tmp/io_errors)"
sed 's/^/GUEST io error: /' /tmp/io_errors
dmesg | grep -iE 'alua|asymmetric|sd[a-z]+|device-mapper: multipath|connection|iscsi' | tail -n 40 \
    | sed 's/^/GUEST dmesg: /'
[ "$(wc -l </tmp/io_errors)" -eq 0 ] || RESULT=fail

mp_steps
r step_io ok
finish
