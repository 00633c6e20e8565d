"""Persistent-reservation PREEMPT and LOGICAL UNIT RESET through libiscsi: runs ON a libiscsi initiator node.

Standard library only (the node has python3 and libiscsi, not this project): lab.faults.scsi sends this file as
`python3 -` stdin with one line appended, `raise SystemExit(main(<json args>))`, so CHAP secrets never appear
on a command line. Prints one JSON line. CDBs are built here and sent with libiscsi's
`iscsi_scsi_command_sync` (SPC-4 6.15 PERSISTENT RESERVE IN, 6.16 PERSISTENT RESERVE OUT); the reset is
libiscsi's `iscsi_task_mgmt_lun_reset_sync` (RFC 7143 11.5.1, function 5).

args: {action: "preempt"|"unregister"|"reserve"|"lun-reset", portal, iqn, initiator, lun, user, password,
       key (int), type (int or null: the holder's), abort (bool), require_reservation (bool)}
"""

import ctypes
import ctypes.util
import glob
import json
import struct
from typing import Any

ISCSI_SESSION_NORMAL = 2
XFER_NONE, XFER_READ, XFER_WRITE = 0, 1, 2
STATUS_GOOD, STATUS_CHECK_CONDITION = 0x00, 0x02
SENSE_UNIT_ATTENTION = 0x06
PRIN, PROUT = 0x5E, 0x5F
PRIN_READ_KEYS, PRIN_READ_RESERVATION = 0x00, 0x01
PROUT_RESERVE = 0x01
PROUT_PREEMPT, PROUT_PREEMPT_AND_ABORT, PROUT_REGISTER_AND_IGNORE = 0x04, 0x05, 0x06
#: struct scsi_task: status, cdb_size, xfer_dir, expxferlen (int), cdb[16], residual_status (int),
#: residual (size_t, offset 40), then struct scsi_sense {uchar error_type; int key; int ascq;} at 48
_SENSE_KEY_OFFSET, _SENSE_ASCQ_OFFSET = 52, 56


class IscsiData(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("data", ctypes.c_void_p)]


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
        "scsi_task_add_data_in_buffer": [vp, i, vp],
        "iscsi_task_mgmt_lun_reset_sync": [vp, ctypes.c_uint32],
    }.items():
        getattr(lib, fn).argtypes = args
        getattr(lib, fn).restype = i
    lib.iscsi_get_error.argtypes = [vp]
    lib.iscsi_get_error.restype = cp
    lib.scsi_create_task.argtypes = [i, cp, i, i]
    lib.scsi_create_task.restype = vp
    lib.iscsi_scsi_command_sync.argtypes = [vp, i, vp, ctypes.POINTER(IscsiData)]
    lib.iscsi_scsi_command_sync.restype = vp
    lib.scsi_free_scsi_task.argtypes = [vp]
    lib.scsi_free_scsi_task.restype = None
    return lib


class ScsiError(OSError):
    def __init__(self, what: str, status: int = -1, sense_key: int = -1, ascq: int = -1) -> None:
        detail = f"status {status:#04x}" if status >= 0 else "transport error"
        if sense_key >= 0:
            detail += f", sense key {sense_key:#x}, asc/ascq {ascq:#06x}"
        super().__init__(f"{what}: {detail}")
        self.status, self.sense_key = status, sense_key


class Session:
    def __init__(self, lib: ctypes.CDLL, args: dict[str, Any]) -> None:
        self.lib, self.lun = lib, int(args["lun"])
        self.ctx = lib.iscsi_create_context(str(args["initiator"]).encode())
        if not self.ctx:
            raise OSError("iscsi_create_context failed")
        lib.iscsi_set_targetname(self.ctx, str(args["iqn"]).encode())
        lib.iscsi_set_session_type(self.ctx, ISCSI_SESSION_NORMAL)
        if args.get("user"):
            lib.iscsi_set_initiator_username_pwd(
                self.ctx, str(args["user"]).encode(), str(args["password"]).encode()
            )
        if lib.iscsi_full_connect_sync(self.ctx, str(args["portal"]).encode(), self.lun) != 0:
            raise OSError(f"login failed: {self.error()}")

    def error(self) -> str:
        e = self.lib.iscsi_get_error(self.ctx)
        return e.decode(errors="replace") if e else "?"

    def command(self, what: str, cdb: bytes, *, data_in: int = 0, data_out: bytes = b"") -> bytes:
        """Send one CDB; retries twice on UNIT ATTENTION (the first command after a reset or preempt)."""
        for attempt in range(3):
            try:
                return self._command_once(what, cdb, data_in, data_out)
            except ScsiError as e:
                if e.sense_key != SENSE_UNIT_ATTENTION or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _command_once(self, what: str, cdb: bytes, data_in: int, data_out: bytes) -> bytes:
        xfer = XFER_READ if data_in else (XFER_WRITE if data_out else XFER_NONE)
        task = self.lib.scsi_create_task(len(cdb), cdb, xfer, data_in or len(data_out))
        if not task:
            raise OSError(f"{what}: scsi_create_task failed")
        buf = ctypes.create_string_buffer(max(data_in, 1))
        out_buf = ctypes.create_string_buffer(data_out, max(len(data_out), 1))
        try:
            if data_in:
                self.lib.scsi_task_add_data_in_buffer(task, data_in, ctypes.cast(buf, ctypes.c_void_p))
            data = IscsiData(len(data_out), ctypes.cast(out_buf, ctypes.c_void_p)) if data_out else None
            done = self.lib.iscsi_scsi_command_sync(
                self.ctx, self.lun, task, ctypes.byref(data) if data is not None else None
            )
            if not done:
                raise OSError(f"{what}: {self.error()}")
            status = ctypes.c_int.from_address(task).value
            if status == STATUS_CHECK_CONDITION:
                key = ctypes.c_int.from_address(task + _SENSE_KEY_OFFSET).value
                ascq = ctypes.c_int.from_address(task + _SENSE_ASCQ_OFFSET).value
                raise ScsiError(what, status, key, ascq)
            if status != STATUS_GOOD:
                raise ScsiError(what, status)
            return buf.raw[:data_in]
        finally:
            self.lib.scsi_free_scsi_task(task)

    def read_reservation(self) -> dict[str, Any]:
        data = self.command("PRIN READ RESERVATION", prin_cdb(PRIN_READ_RESERVATION, 64), data_in=64)
        return parse_read_reservation(data)

    def read_keys(self) -> list[int]:
        data = self.command("PRIN READ KEYS", prin_cdb(PRIN_READ_KEYS, 0x1000), data_in=0x1000)
        n = struct.unpack_from(">I", data, 4)[0] // 8
        return [struct.unpack_from(">Q", data, 8 + 8 * k)[0] for k in range(min(n, (len(data) - 8) // 8))]

    def prout(self, what: str, sa: int, rtype: int, key: int, sark: int) -> None:
        params = prout_params(key, sark)
        self.command(what, prout_cdb(sa, rtype, len(params)), data_out=params)

    def lun_reset(self) -> int:
        return int(self.lib.iscsi_task_mgmt_lun_reset_sync(self.ctx, self.lun))

    def logout(self) -> None:
        self.lib.iscsi_logout_sync(self.ctx)
        self.lib.iscsi_destroy_context(self.ctx)


def prin_cdb(sa: int, alloc: int) -> bytes:
    """PERSISTENT RESERVE IN (SPC-4 6.15.1): service action, ALLOCATION LENGTH in bytes 7-8."""
    return bytes([PRIN, sa & 0x1F, 0, 0, 0, 0, 0]) + struct.pack(">HB", alloc, 0)


def prout_cdb(sa: int, rtype: int, length: int) -> bytes:
    """PERSISTENT RESERVE OUT (SPC-4 6.16.1): service action, scope 0 (LU) / type, PARAMETER LIST LENGTH in
    bytes 5-8."""
    return bytes([PROUT, sa & 0x1F, rtype & 0x0F, 0, 0]) + struct.pack(">IB", length, 0)


def prout_params(key: int, sark: int) -> bytes:
    """The basic PROUT parameter list (SPC-4 6.16.3): RESERVATION KEY, SERVICE ACTION RESERVATION KEY,
    obsolete, flags (SPEC_I_PT, ALL_TG_PT, APTPL all 0), reserved, obsolete: 24 bytes."""
    return struct.pack(">QQ4xBx2x", key, sark, 0)


def parse_read_reservation(data: bytes) -> dict[str, Any]:
    """PRIN READ RESERVATION parameter data (SPC-4 6.15.3) -> {generation, held, key, scope, type}."""
    gen, length = struct.unpack_from(">II", data, 0)
    if length < 16 or len(data) < 24:
        return {"generation": gen, "held": False, "key": None, "scope": None, "type": None}
    key = struct.unpack_from(">Q", data, 8)[0]
    scope_type = data[21]
    return {"generation": gen, "held": True, "key": key, "scope": scope_type >> 4, "type": scope_type & 0x0F}


def preempt(s: Session, args: dict[str, Any]) -> dict[str, Any]:
    res: dict[str, Any] = {"before": s.read_reservation()}
    res["keys_before"] = s.read_keys()
    before = res["before"]
    if not before["held"] and args.get("require_reservation", True):
        raise OSError("no persistent reservation is held: nothing to preempt")
    key = int(args["key"])
    s.prout("PROUT REGISTER AND IGNORE EXISTING KEY", PROUT_REGISTER_AND_IGNORE, 0, 0, key)
    if before["held"]:
        rtype = int(args["type"]) if args.get("type") is not None else int(before["type"])
        sa = PROUT_PREEMPT_AND_ABORT if args.get("abort") else PROUT_PREEMPT
        name = "PROUT PREEMPT AND ABORT" if args.get("abort") else "PROUT PREEMPT"
        s.prout(name, sa, rtype, key, int(before["key"]))
    res["after"] = s.read_reservation()
    res["keys_after"] = s.read_keys()
    return res


def main(args: dict[str, Any]) -> int:
    out: dict[str, Any] = {"ok": False, "action": args.get("action"), "step": "login"}
    try:
        s = Session(_lib(), args)
    except OSError as e:
        out["error"] = str(e)
        print(json.dumps(out))
        return 1
    try:
        out["step"] = args["action"]
        if args["action"] == "preempt":
            out.update(preempt(s, args))
        elif args["action"] == "reserve":  # a holder to preempt (drill preparation, live tests)
            key = int(args["key"])
            s.prout("PROUT REGISTER AND IGNORE EXISTING KEY", PROUT_REGISTER_AND_IGNORE, 0, 0, key)
            s.prout("PROUT RESERVE", PROUT_RESERVE, int(args["type"]), key, 0)
            out["after"] = s.read_reservation()
        elif args["action"] == "unregister":
            out["before"] = s.read_reservation()
            s.prout("PROUT REGISTER AND IGNORE EXISTING KEY (unregister)", PROUT_REGISTER_AND_IGNORE, 0, 0, 0)
            out["after"] = s.read_reservation()
        elif args["action"] == "lun-reset":
            out["tmf_rc"] = s.lun_reset()
            if out["tmf_rc"] != 0:
                raise OSError(f"LUN RESET failed: {s.error()}")
        else:
            raise OSError(f"unknown action {args['action']!r}")
        out["ok"] = True
    except OSError as e:
        out["error"] = str(e)
    finally:
        s.logout()
    print(json.dumps(out))
    return 0 if out["ok"] else 1
