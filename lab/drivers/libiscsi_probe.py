"""Write a pattern through libiscsi, read it back in a second session, verify it, log out: one JSON line out.

Runs ON the libiscsi initiator node (`python3 - ARGS < this file`), standard library only: it calls the node's
libiscsi (libiscsi.so.*) through ctypes, so the I/O is libiscsi's own login (CHAP), WRITE(16) and READ(16).

    python3 libiscsi_probe.py PORTAL IQN LUN INITIATOR_IQN OFFSET LENGTH [USER PASSWORD]
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import hashlib
import json
import os
import sys
import time
from typing import Any

ISCSI_SESSION_NORMAL = 2
SCSI_STATUS_GOOD = 0
BLOCK = 512
MAX_LENGTH = 16 << 20


class ScsiIovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("iscsi")
    if name is None:
        found = sorted(glob.glob("/usr/lib/*/libiscsi.so.*") + glob.glob("/usr/lib/libiscsi.so.*"))
        if not found:
            raise OSError("libiscsi not found")
        name = found[-1]
    lib = ctypes.CDLL(name)
    vp, cp, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    lib.iscsi_create_context.restype = vp
    lib.iscsi_create_context.argtypes = [cp]
    for fn, args in {
        "iscsi_set_targetname": [vp, cp],
        "iscsi_set_session_type": [vp, i],
        "iscsi_set_initiator_username_pwd": [vp, cp, cp],
        "iscsi_full_connect_sync": [vp, cp, i],
        "iscsi_logout_sync": [vp],
        "iscsi_destroy_context": [vp],
    }.items():
        getattr(lib, fn).argtypes = args
        getattr(lib, fn).restype = i
    lib.iscsi_get_error.argtypes = [vp]
    lib.iscsi_get_error.restype = cp
    u64, u32 = ctypes.c_uint64, ctypes.c_uint32
    lib.iscsi_write16_sync.argtypes = [vp, i, u64, ctypes.c_char_p, u32, i, i, i, i, i, i]
    lib.iscsi_write16_sync.restype = vp
    # READ(16) into our own buffer (struct scsi_iovec {void *iov_base; size_t iov_len;})
    lib.iscsi_read16_iov_sync.argtypes = [vp, i, u64, u32, i, i, i, i, i, i, ctypes.POINTER(ScsiIovec), i]
    lib.iscsi_read16_iov_sync.restype = vp
    lib.scsi_free_scsi_task.argtypes = [vp]
    return lib


class Session:
    def __init__(
        self, lib: ctypes.CDLL, portal: str, iqn: str, lun: int, me: str, user: str, pw: str
    ) -> None:
        self.lib, self.lun = lib, lun
        self.ctx = lib.iscsi_create_context(me.encode())
        if not self.ctx:
            raise OSError("iscsi_create_context failed")
        lib.iscsi_set_targetname(self.ctx, iqn.encode())
        lib.iscsi_set_session_type(self.ctx, ISCSI_SESSION_NORMAL)
        if user:
            lib.iscsi_set_initiator_username_pwd(self.ctx, user.encode(), pw.encode())
        if lib.iscsi_full_connect_sync(self.ctx, portal.encode(), lun) != 0:
            raise OSError(f"login failed: {self.error()}")

    def error(self) -> str:
        e = self.lib.iscsi_get_error(self.ctx)
        return e.decode(errors="replace") if e else "?"

    def _status(self, task: int | None, what: str) -> None:
        if not task:
            raise OSError(f"{what}: {self.error()}")
        status = ctypes.cast(task, ctypes.POINTER(ctypes.c_int))[
            0
        ]  # struct scsi_task starts with `int status`
        if status != SCSI_STATUS_GOOD:
            self.lib.scsi_free_scsi_task(task)
            raise OSError(f"{what}: SCSI status {status:#x}")

    def write(self, lba: int, data: bytes) -> None:
        task = self.lib.iscsi_write16_sync(self.ctx, self.lun, lba, data, len(data), BLOCK, 0, 0, 0, 0, 0)
        self._status(task, "WRITE(16)")
        self.lib.scsi_free_scsi_task(task)

    def read(self, lba: int, length: int) -> bytes:
        buf = ctypes.create_string_buffer(length)
        iov = ScsiIovec(ctypes.cast(buf, ctypes.c_void_p), length)
        task = self.lib.iscsi_read16_iov_sync(
            self.ctx, self.lun, lba, length, BLOCK, 0, 0, 0, 0, 0, ctypes.byref(iov), 1
        )
        self._status(task, "READ(16)")
        self.lib.scsi_free_scsi_task(task)
        return buf.raw

    def logout(self) -> bool:
        ok = self.lib.iscsi_logout_sync(self.ctx) == 0
        self.lib.iscsi_destroy_context(self.ctx)
        return ok


def probe(argv: list[str]) -> dict[str, Any]:
    portal, iqn, lun_s, me, off_s, len_s = argv[:6]
    user, pw = (argv[6], argv[7]) if len(argv) >= 8 else ("", "")
    lun, offset, length = int(lun_s), int(off_s), int(len_s)
    if offset % BLOCK or length % BLOCK or not 0 < length <= MAX_LENGTH:
        return {
            "ok": False,
            "step": "args",
            "error": "offset/length must be multiples of 512, length <= 16 MiB",
        }
    lib = _lib()
    pattern = os.urandom(length)
    res: dict[str, Any] = {"ok": False, "sha256": hashlib.sha256(pattern).hexdigest(), "length": length}
    t0 = time.monotonic()
    try:
        s = Session(lib, portal, iqn, lun, me, user, pw)
    except OSError as e:
        return {**res, "step": "login", "error": str(e)}
    res["login_s"] = round(time.monotonic() - t0, 3)
    try:
        s.write(offset // BLOCK, pattern)
    except OSError as e:
        s.logout()
        return {**res, "step": "write", "error": str(e)}
    res["write_logout"] = s.logout()
    try:  # a second session: the data must come back from the target, not from anything cached here
        s2 = Session(lib, portal, iqn, lun, me, user, pw)
        back = s2.read(offset // BLOCK, length)
    except OSError as e:
        return {**res, "step": "read", "error": str(e)}
    res["read_sha256"] = hashlib.sha256(back).hexdigest()
    res["verified"] = back == pattern
    res["logout"] = s2.logout()
    res["ok"] = bool(res["verified"] and res["logout"] and res["write_logout"])
    res["step"] = "done"
    return res


if __name__ == "__main__":
    try:
        print(json.dumps(probe(sys.argv[1:])))
    except Exception as e:  # report, never a traceback: the controller parses one JSON line
        print(json.dumps({"ok": False, "step": "crash", "error": f"{type(e).__name__}: {e}"}))
