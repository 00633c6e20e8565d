#!/usr/bin/env python3
"""The stall probe: one small verified I/O every 100 ms on a block device (or file), timestamped.

Shipped to a lab node and run there with the node's own python3 (Debian 11's 3.9 too: stdlib only, no 3.10+
syntax). Usage:

    python3 probe_agent.py run --device DEV --offset BYTES --blocks N --out FILE [--state FILE]
                               [--interval 0.1] [--duration S] [--max-records N] [--direct auto|on|off]
    python3 probe_agent.py verify --device DEV --state FILE [--out FILE]

`run` keeps a fixed-rate schedule (slot k at start + k * interval, not sleep-after-I/O). At each slot, if no
probe I/O is outstanding, the worker thread gets one: write a 4 KiB block (O_DIRECT, page-aligned mmap buffer)
carrying a header (magic, run id, sequence number, slot LBA, timestamp, crc32 of the payload) to LBA
`seq % blocks` of the reserved region, read it back with O_DIRECT and compare. While an I/O is outstanding
(a path is down, multipath queues), each slot that passes is recorded as missed: those are the stall. A failed
I/O is recorded and the schedule goes on.

Output, JSON Lines flushed one by one (times are this node's time.time()):
    {"type": "start", "t", "run_id", "device", "offset", "blocks", "interval", "direct", "pid"}
    {"type": "io", "seq", "lba", "t_slot", "t_start", "t_end", "ok", "lat_s", "err"}
    {"type": "missed", "t_slot", "late": bool}      a slot skipped (I/O outstanding, or the scheduler late)
    {"type": "end", "t", "reason", "ios", "errors", "missed", "outstanding"}
    {"type": "verify", "t", "ok", "checked", "bad", "errors"}

At the end (duration, --max-records, or SIGTERM/SIGINT) it waits a bounded time for the outstanding I/O, saves
the state (which sequence numbers each LBA may hold: the last completed write, plus writes that failed or never
completed after it) and re-reads every written block: magic, run id, LBA, payload crc and sequence number must
match -> the `verify` line. `verify` repeats that pass later from the state file.

Test hooks (never used by the lab): --test-stall SEQ:SECONDS sleeps before the I/O with that sequence number.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import queue
import random
import signal
import struct
import sys
import threading
import time
import zlib

BLOCK = 4096
MAGIC = b"SLPROBE1"
#: magic, run id, sequence number, LBA index within the region, timestamp, crc32 of the payload
HEADER = struct.Struct("<8s8sQIdI")
PAYLOAD = BLOCK - HEADER.size
MAX_BAD_LISTED = 20
#: in a state's allowed list: the block may still hold what was there before the run (no write completed yet)
NOT_OURS = -1


class Output:
    """JSON Lines to a file, one flushed line per record, thread-safe."""

    def __init__(self, path: str) -> None:
        self._f = open(path, "a", buffering=1) if path != "-" else sys.stdout  # noqa: SIM115 (lives as long as the run)
        self._lock = threading.Lock()
        self.lines = 0

    def emit(self, rec: dict) -> None:
        line = json.dumps(rec, sort_keys=True)
        with self._lock:
            self._f.write(line + "\n")
            self._f.flush()
            self.lines += 1


def payload(run_id: bytes, seq: int) -> bytes:
    rnd = random.Random(int.from_bytes(run_id, "little") ^ (seq * 0x9E3779B97F4A7C15))
    return rnd.getrandbits(PAYLOAD * 8).to_bytes(PAYLOAD, "little")


def make_block(run_id: bytes, seq: int, lba: int, t: float) -> bytes:
    body = payload(run_id, seq)
    return HEADER.pack(MAGIC, run_id, seq, lba, t, zlib.crc32(body)) + body


def check_block(data: bytes, run_id: bytes, lba: int) -> tuple[int, str]:
    """(sequence number, "") for a sound block of this run at this LBA, else (-1, what is wrong)."""
    magic, rid, seq, blba, _t, crc = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        return -1, "no probe header"
    if rid != run_id:
        return -1, "block of another run"
    if blba != lba:
        return -1, f"header says LBA {blba}"
    body = bytes(data[HEADER.size : BLOCK])
    if zlib.crc32(body) != crc:
        return -1, "payload crc mismatch"
    if body != payload(run_id, seq):
        return -1, f"payload differs from the pattern of seq {seq}"
    return seq, ""


class Device:
    """The region's file descriptor and page-aligned buffers (O_DIRECT needs aligned memory and offsets)."""

    def __init__(self, path: str, direct: str, writable: bool = True) -> None:
        flags = (os.O_RDWR if writable else os.O_RDONLY) | getattr(os, "O_CLOEXEC", 0)
        self.direct = False
        if direct in ("auto", "on") and hasattr(os, "O_DIRECT"):
            try:
                self.fd = os.open(path, flags | os.O_DIRECT)
                self.direct = True
            except OSError:
                if direct == "on":
                    raise
        if not self.direct:
            if direct == "on":
                raise OSError("O_DIRECT is not available")
            self.fd = os.open(path, flags)
        self.wbuf = mmap.mmap(-1, BLOCK)
        self.rbuf = mmap.mmap(-1, BLOCK)

    def write(self, data: bytes, off: int) -> None:
        self.wbuf.seek(0)
        self.wbuf.write(data)
        n = os.pwrite(self.fd, self.wbuf, off)
        if n != BLOCK:
            raise OSError(f"short write: {n} bytes")
        if not self.direct:
            os.fsync(self.fd)

    def read(self, off: int, buf: mmap.mmap | None = None) -> bytes:
        b = self.rbuf if buf is None else buf
        n = os.preadv(self.fd, [b], off)
        if n != BLOCK:
            raise OSError(f"short read: {n} bytes")
        return bytes(b[:BLOCK])


class Probe:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Output(args.out)
        self.dev = Device(args.device, args.direct)
        self.run_id = os.urandom(8)
        self.stop = threading.Event()
        self.jobs: queue.Queue = queue.Queue(maxsize=1)
        self.idle = threading.Event()
        self.idle.set()
        self.lock = threading.Lock()
        #: LBA -> sequence numbers the block may hold (the last completed write, then writes that failed or were
        #: still outstanding after it; NOT_OURS until a write completed)
        self.allowed: dict[int, list[int]] = {}
        self.pending: tuple[int, int] | None = None  # (seq, lba) being written
        self.ios = 0
        self.errors = 0
        self.missed = 0
        self.stalls: dict[int, float] = {}
        for hook in args.test_stall or []:
            seq, secs = hook.split(":")
            self.stalls[int(seq)] = float(secs)

    # ---------------------------------------------------------------- worker

    def worker(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            seq, t_slot = job
            try:
                self.one_io(seq, t_slot)
            finally:
                self.idle.set()

    def one_io(self, seq: int, t_slot: float) -> None:
        lba = seq % self.args.blocks
        off = self.args.offset + lba * BLOCK
        t_start = time.time()
        with self.lock:
            self.pending = (seq, lba)
            self.allowed.setdefault(lba, [NOT_OURS])
        ok, err, wrote = False, "", False
        try:
            if seq in self.stalls:
                time.sleep(self.stalls[seq])
            data = make_block(self.run_id, seq, lba, t_start)
            self.dev.write(data, off)
            wrote = True
            back = self.dev.read(off)
            if back == data:
                ok = True
            else:
                first = next(i for i in range(BLOCK) if back[i] != data[i])
                err = f"read-back differs from byte {first}"
        except OSError as e:
            err = f"{'read' if wrote else 'write'}: {e.strerror or e}"
        t_end = time.time()
        with self.lock:
            self.pending = None
            if wrote:
                self.allowed[lba] = [seq]
            else:  # the write failed: the block holds the old data or the new
                self.allowed[lba].append(seq)
            self.ios += 1
            self.errors += 0 if ok else 1
        self.out.emit(
            {
                "type": "io",
                "seq": seq,
                "lba": lba,
                "t_slot": round(t_slot, 6),
                "t_start": round(t_start, 6),
                "t_end": round(t_end, 6),
                "ok": ok,
                "lat_s": round(t_end - t_start, 6),
                "err": err,
            }
        )

    # ------------------------------------------------------------- schedule

    def records(self) -> int:
        return self.out.lines

    def run(self) -> str:
        a = self.args
        threading.Thread(target=self.worker, name="probe-io", daemon=True).start()
        t0_wall, t0 = time.time(), time.monotonic()
        self.out.emit(
            {
                "type": "start",
                "t": t0_wall,
                "run_id": self.run_id.hex(),
                "device": a.device,
                "offset": a.offset,
                "blocks": a.blocks,
                "interval": a.interval,
                "direct": self.dev.direct,
                "pid": os.getpid(),
            }
        )
        k, seq = 0, 0
        reason = "duration"
        while True:
            due = t0 + k * a.interval
            if self.stop.wait(max(0.0, due - time.monotonic())):
                reason = "signal"
                break
            now = time.monotonic()
            if now - t0 >= a.duration:
                break
            if self.records() >= a.max_records:
                reason = "max-records"
                break
            # slots the scheduler itself overslept count as missed too
            late_to = int((now - t0) / a.interval)
            while k < late_to:
                self.missed += 1
                self.out.emit({"type": "missed", "t_slot": round(t0_wall + k * a.interval, 6), "late": True})
                k += 1
            t_slot = t0_wall + k * a.interval
            if self.idle.is_set():
                self.idle.clear()
                self.jobs.put((seq, t_slot))
                seq += 1
            else:
                self.missed += 1
                self.out.emit({"type": "missed", "t_slot": round(t_slot, 6), "late": False})
            k += 1
        drained = self.idle.wait(a.drain_timeout)
        with self.lock:
            outstanding = self.pending
            if outstanding is not None:
                self.allowed[outstanding[1]].append(outstanding[0])
            state = {
                "run_id": self.run_id.hex(),
                "device": a.device,
                "offset": a.offset,
                "blocks": a.blocks,
                "allowed": {str(k): v for k, v in self.allowed.items()},
            }
        self.out.emit(
            {
                "type": "end",
                "t": time.time(),
                "reason": reason,
                "ios": self.ios,
                "errors": self.errors,
                "missed": self.missed,
                "outstanding": not drained,
            }
        )
        if a.state:
            write_state(a.state, state)
        return reason


def write_state(path: str, state: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def verify(dev: Device, state: dict) -> dict:
    """Re-read every block the run wrote; each must hold one of its allowed sequence numbers."""
    run_id = bytes.fromhex(state["run_id"])
    checked, errors, bad = 0, 0, []
    for key, allowed in sorted(state["allowed"].items(), key=lambda kv: int(kv[0])):
        if not allowed:
            continue
        lba = int(key)
        try:
            data = dev.read(int(state["offset"]) + lba * BLOCK)
        except OSError as e:
            errors += 1
            bad.append({"lba": lba, "err": f"read: {e.strerror or e}"})
            continue
        checked += 1
        seq, why = check_block(data, run_id, lba)
        if seq < 0 and why in ("no probe header", "block of another run") and NOT_OURS in allowed:
            continue
        if seq < 0:
            bad.append({"lba": lba, "err": why})
        elif seq not in allowed:
            bad.append({"lba": lba, "err": f"holds seq {seq}, expected {allowed}"})
    return {
        "type": "verify",
        "t": time.time(),
        "ok": not bad and errors == 0,
        "checked": checked,
        "errors": errors,
        "bad": bad[:MAX_BAD_LISTED],
        "bad_count": len(bad),
    }


def verify_bounded(dev: Device, state: dict, timeout: float) -> dict:
    """`verify` in a thread, so a read blocked on a dead path cannot hang the agent."""
    box: list = []
    th = threading.Thread(target=lambda: box.append(verify(dev, state)), daemon=True)
    th.start()
    th.join(timeout)
    if box:
        return box[0]
    return {"type": "verify", "t": time.time(), "ok": False, "checked": 0, "errors": 1,
            "bad": [{"lba": -1, "err": f"verify pass did not finish in {timeout:.0f} s"}], "bad_count": 0}  # fmt: skip


def parse_args(argv: list) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="probe_agent")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--device", required=True)
    r.add_argument(
        "--offset", type=int, default=0, help="start of the reserved region, bytes (4 KiB aligned)"
    )
    r.add_argument("--blocks", type=int, default=256, help="4 KiB blocks in the region (LBAs rotate)")
    r.add_argument("--out", required=True)
    r.add_argument("--state", default="")
    r.add_argument("--interval", type=float, default=0.1)
    r.add_argument("--duration", type=float, default=600.0)
    r.add_argument("--max-records", type=int, default=0, help="default: 2 per slot of the duration + 100")
    r.add_argument("--drain-timeout", type=float, default=30.0)
    r.add_argument("--verify-timeout", type=float, default=60.0)
    r.add_argument("--direct", choices=("auto", "on", "off"), default="auto")
    r.add_argument("--test-stall", action="append", help="test hook SEQ:SECONDS")
    v = sub.add_parser("verify")
    v.add_argument("--device", default="")
    v.add_argument("--state", required=True)
    v.add_argument("--out", default="-")
    v.add_argument("--direct", choices=("auto", "on", "off"), default="auto")
    v.add_argument("--verify-timeout", type=float, default=60.0)
    a = p.parse_args(argv)
    if a.cmd == "run":
        if a.offset % BLOCK or a.blocks < 1 or a.interval <= 0 or a.duration <= 0:
            p.error("offset must be 4 KiB aligned; blocks, interval and duration positive")
        if a.max_records <= 0:
            a.max_records = int(2 * a.duration / a.interval) + 100
    return a


def main(argv: list) -> int:
    a = parse_args(argv)
    if a.cmd == "verify":
        with open(a.state) as f:
            state = json.load(f)
        dev = Device(a.device or state["device"], a.direct, writable=False)
        res = verify_bounded(dev, state, a.verify_timeout)
        Output(a.out).emit(res)
        return 0 if res["ok"] else 1
    probe = Probe(a)

    def on_signal(_signo: int, _frame: object) -> None:
        probe.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    probe.run()
    with probe.lock:
        state = {
            "run_id": probe.run_id.hex(),
            "offset": a.offset,
            "allowed": {str(k): list(v) for k, v in probe.allowed.items()},
        }
    res = verify_bounded(probe.dev, state, a.verify_timeout)
    probe.out.emit(res)
    return 0


if __name__ == "__main__":
    rc = main(sys.argv[1:])
    sys.stdout.flush()
    # a worker blocked in an I/O that never returns must not keep the process alive
    os._exit(rc)
