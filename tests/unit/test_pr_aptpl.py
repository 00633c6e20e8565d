"""APTPL (SPC-4 5.13.5): the state is written atomically to <state_dir>/pr/<serial>.json before the PERSISTENT
RESERVE OUT completes (directory created as needed), reloaded when the LU is built again, removed when APTPL is
turned off, and a write that cannot be made durable fails the command and changes nothing."""

import asyncio
import itertools
import json

from target.backstore.base import Backstore
from target.config.model import StorageObjectConfig
from target.scsi.command import Nexus, ScsiRequest, ScsiStatus
from target.scsi.device import LogicalUnit
from target.scsi.gates import PrType
from target.scsi.pr import attach, pr_state
from target.scsi.pr.aptpl import AptplStore
from target.scsi.sense import Asc, SenseKey, parse_sense

T = "iqn.2003-01.org.example:t1"
N1 = Nexus("iqn.2000-01.test:a", 0x400000000001, T, 1)
N2 = Nexus("iqn.2000-01.test:b", 0x400000000002, T, 1)
_tags = itertools.count(1)


class MemBackstore(Backstore):
    def __init__(self) -> None:
        self.size = 1 << 20
        self.block_size = 512
        self.can_unmap = False
        self.unmap_zeroes = False
        self.write_back = True

    async def read(self, offset, length):
        return bytes(length)

    async def write(self, offset, data, fua=False):
        return None

    async def flush(self):
        return None


def new_lu(state_dir) -> LogicalUnit:
    lu = LogicalUnit(MemBackstore(), StorageObjectConfig(plugin="fileio", name="d", wwn="lu-serial-1"))
    attach(lu, str(state_dir))
    return lu


def prout(lu, nexus, sa, key=0, sa_key=0, pr_type=0, flags=0):
    data = key.to_bytes(8, "big") + sa_key.to_bytes(8, "big") + bytes(4) + bytes((flags, 0, 0, 0))
    req = ScsiRequest(
        nexus=nexus,
        lun=0,
        cdb=bytes((0x5F, sa, pr_type, 0, 0, 0, 0, 0, 24, 0)),
        tag=next(_tags),
        data_out=data,
    )
    return asyncio.run(lu.execute(req))


def full_status(lu):
    req = ScsiRequest(
        nexus=N1,
        lun=0,
        cdb=bytes((0x5E, 3, 0, 0, 0, 0, 0, 0x10, 0, 0)),
        tag=next(_tags),
        expected_in_length=4096,
    )
    return bytes(asyncio.run(lu.execute(req)).data_in)


def test_written_before_completion_and_reloaded(tmp_path):
    state_dir = tmp_path / "missing" / "state"  # created as needed
    lu = new_lu(state_dir)
    path = state_dir / "pr" / "lu-serial-1.json"
    assert prout(lu, N1, 0x06, 0, 0xAA, flags=0x01).status is ScsiStatus.GOOD
    assert path.exists()  # durable by the time the command completed
    assert prout(lu, N2, 0x06, 0, 0xBB).status is ScsiStatus.GOOD  # APTPL=0 from this one turns it off...
    assert not path.exists()
    assert prout(lu, N2, 0x06, 0, 0xBB, flags=0x01).status is ScsiStatus.GOOD  # ...and on again
    assert (
        prout(lu, N1, 0x01, 0xAA, pr_type=PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY).status is ScsiStatus.GOOD
    )
    doc = json.loads(path.read_text())
    assert doc["aptpl"] is True and doc["reservation"]["type"] == 5
    assert [r["key"] for r in doc["registrations"]] == ["0x00000000000000aa", "0x00000000000000bb"]
    assert not list((state_dir / "pr").glob(".*.tmp"))  # no temp files left behind
    before = full_status(lu)

    again = new_lu(state_dir)  # a restart
    st = pr_state(again)
    assert st.aptpl and st.is_holder(N1) and st.is_registered(N2)
    assert st.reservation_type() is PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
    assert full_status(again) == before  # same generation, keys, holder, TransportIDs


def test_clear_with_aptpl_persists_the_empty_state(tmp_path):
    lu = new_lu(tmp_path)
    prout(lu, N1, 0x06, 0, 0xAA, flags=0x01)
    prout(lu, N1, 0x03, 0xAA)
    again = new_lu(tmp_path)
    assert pr_state(again).registrations == [] and pr_state(again).generation == 2


def test_unwritable_directory_fails_and_rolls_back(tmp_path):
    (tmp_path / "pr").write_text("a file where the directory should be")
    lu = new_lu(tmp_path)
    r = prout(lu, N1, 0x06, 0, 0xAA, flags=0x01)
    assert r.status is ScsiStatus.CHECK_CONDITION
    assert parse_sense(r.sense) == (SenseKey.ILLEGAL_REQUEST, Asc.INSUFFICIENT_REGISTRATION_RESOURCES)
    st = pr_state(lu)
    assert st.registrations == [] and st.generation == 0 and not st.aptpl


def test_force_pr_aptpl_persists_without_the_bit(tmp_path):
    lu = LogicalUnit(
        MemBackstore(),
        StorageObjectConfig(plugin="fileio", name="d", wwn="lu-serial-1", attributes={"force_pr_aptpl": 1}),
    )
    attach(lu, str(tmp_path))
    prout(lu, N1, 0x06, 0, 0xAA)
    assert (tmp_path / "pr" / "lu-serial-1.json").exists()


def test_malformed_file_is_ignored(tmp_path):
    store = AptplStore(tmp_path, "lu-serial-1")
    store.directory.mkdir()
    store.path.write_text("{not json")
    assert store.load() is None
    store.path.write_text(json.dumps({"version": 1, "registrations": [{"key": 5}]}))
    lu = new_lu(tmp_path)  # logged, not loaded
    assert pr_state(lu).registrations == []


def test_serial_is_sanitised_for_the_file_name(tmp_path):
    store = AptplStore(tmp_path, "../../etc/passwd")
    assert store.path.parent == tmp_path / "pr"
