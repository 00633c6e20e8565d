"""Image recipes: validation messages, hash stability, version records, build command lines, VM launch lines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from lab.images import build as B
from lab.images.cli import register
from lab.images.recipe import (
    ImageKind,
    RecipeError,
    find_recipe,
    images_dir,
    load_recipe,
    parse,
    parse_dpkg_query,
    recipe_hash,
    recipe_names,
    validate,
)
from lab.images.vm import VM_IMAGE_MOUNT, VmNic, guest_nics, vm_command, vm_mounts

SHIPPED = ["libiscsi", "linux-debian11", "linux-debian12", "linux-debian13", "qemu-runner", "target"]


def _minimal(**over: object) -> dict[str, object]:
    d: dict[str, object] = {"name": "demo", "kind": "container", "suite": "bookworm", "packages": ["fio"]}
    d.update(over)
    return d


# --------------------------------------------------------------------------------------------- shipped


def test_shipped_recipes_all_load() -> None:
    assert recipe_names() == SHIPPED
    for name in SHIPPED:
        r = load_recipe(images_dir() / f"{name}.yml")
        assert r.name == name
        assert r.source == images_dir() / f"{name}.yml"


def test_shipped_vm_recipes_cover_three_releases_with_kernel_and_initiator_tools() -> None:
    releases = {}
    for n in ("linux-debian11", "linux-debian12", "linux-debian13"):
        r = find_recipe(n)
        assert r.kind is ImageKind.VM
        assert r.kernel is not None and r.kernel.package == "linux-image-amd64"
        for pkg in (
            "open-iscsi",
            "multipath-tools",
            "sg3-utils",
            "fio",
            "e2fsprogs",
            "openssh-server",
            "python3",
        ):
            assert pkg in r.packages, (n, pkg)
        assert "busybox-static" in r.packages  # the initramfs is built from it
        releases[r.release] = r.suite
    assert releases == {"11": "bullseye", "12": "bookworm", "13": "trixie"}


def test_target_recipe_installs_project_and_serves_config() -> None:
    r = find_recipe("target")
    assert r.project is True
    assert r.cmd == ("sanlab", "target", "serve", "--config", "/etc/sanlab/config.json")
    assert "tgt" in r.packages and "python3-venv" in r.packages


def test_qemu_runner_has_block_driver_and_ipxe() -> None:
    r = find_recipe("qemu-runner")
    assert {"qemu-system-x86", "qemu-block-extra", "qemu-utils", "ipxe-qemu", "socat"} <= set(r.packages)


# --------------------------------------------------------------------------------------------- validation


def test_valid_minimal_recipe() -> None:
    assert validate(_minimal()) == []
    r = parse(_minimal(env={"B": "2", "A": "1"}, files=[{"src": "x", "dest": "/x", "mode": "0755"}]))
    assert r.kind is ImageKind.CONTAINER and r.release == "12"
    assert r.files[0].mode == 0o755


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_minimal(kind="docker"), "kind: 'docker' is not one of ['container', 'vm']"),
        (_minimal(suite="buster"), "suite: 'buster' is not one of ['bullseye', 'bookworm', 'trixie']"),
        (_minimal(packages=[]), "packages: [] should be non-empty"),
        (_minimal(packages=["fio", "Bad Name"]), "packages[1]: 'Bad Name' does not match"),
        (_minimal(packages=["fio", "fio"]), "packages: ['fio', 'fio'] has non-unique elements"),
        (_minimal(name="Bad_Name"), "name: 'Bad_Name' does not match"),
        (
            _minimal(colour="red"),
            "(top level): Additional properties are not allowed ('colour' was unexpected)",
        ),
        (_minimal(files=[{"src": "a", "dest": "relative"}]), "files[0].dest: 'relative' does not match '^/'"),
        (_minimal(files=[{"dest": "/a"}]), "files[0]: 'src' is a required property"),
        (_minimal(cmd=[]), "cmd: [] should be non-empty"),
        (_minimal(env={"A": 1}), "env.A: 1 is not of type 'string'"),
        (_minimal(kind="vm"), "kernel: required for kind vm"),
        (
            _minimal(kernel={"package": "linux-image-amd64"}),
            "kernel: only for kind container"[:0] + "kernel: only for kind vm",
        ),
        (
            _minimal(kind="vm", kernel={"package": "linux-image-amd64"}, cmd=["x"]),
            "cmd: only for kind container",
        ),
        (_minimal(kind="vm", kernel={}), "kernel: 'package' is a required property"),
        ({"kind": "container"}, "(top level): 'name' is a required property"),
        ("just a string", "(top level): 'just a string' is not of type 'object'"),
    ],
)
def test_invalid_recipes_report_path_and_message(data: object, expected: str) -> None:
    errors = validate(data)
    assert any(e.startswith(expected) for e in errors), errors


def test_every_error_is_reported_at_once() -> None:
    data = _minimal(kind="vm", suite="sid", packages=["OK?"], cmd=["x"])
    with pytest.raises(RecipeError) as ei:
        parse(data, source="images/demo.yml")
    errs = ei.value.errors
    assert any(e.startswith("suite:") for e in errs)
    assert any(e.startswith("packages[0]:") for e in errs)
    assert "kernel: required for kind vm" in errs
    assert "cmd: only for kind container" in errs
    assert str(ei.value).startswith("images/demo.yml: ")


def test_load_recipe_checks_file_name_and_files(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "present").write_text("x")
    data = _minimal(
        name="other",
        files=[
            {"src": "present", "dest": "/a"},
            {"src": "missing", "dest": "/b"},
            {"src": "../up", "dest": "/c"},
        ],
    )
    path = tmp_path / "demo.yml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RecipeError) as ei:
        load_recipe(path)
    errs = ei.value.errors
    assert "name: 'other' does not match the file name 'demo'" in errs
    assert any(e.startswith("files[1].src: 'missing' not found") for e in errs)
    assert "files[2].src: '../up' must be a relative path inside images/files" in errs
    assert not any(e.startswith("files[0]") for e in errs)


def test_load_recipe_yaml_error_and_unknown_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError) as ei:
        load_recipe(bad)
    assert ei.value.errors[0].startswith("(yaml):")
    with pytest.raises(RecipeError, match=r"no recipe .*nope\.yml"):
        find_recipe("nope", tmp_path)


# --------------------------------------------------------------------------------------------- hashing


def test_hash_is_stable_and_covers_inputs(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("one")
    r = parse(_minimal(env={"A": "1", "B": "2"}, files=[{"src": "f", "dest": "/f"}]))
    h = recipe_hash(r, files_dir=tmp_path)
    # a fixed vector: the same recipe and file give this hash on every machine (bump BUILDER_VERSION on purpose)
    assert h == recipe_hash(
        parse(_minimal(env={"B": "2", "A": "1"}, files=[{"src": "f", "dest": "/f"}])), files_dir=tmp_path
    )
    assert len(h) == 64 and int(h, 16) >= 0
    assert recipe_hash(parse(_minimal(packages=["fio", "fdisk"])), files_dir=tmp_path) != recipe_hash(
        parse(_minimal(packages=["fio"])), files_dir=tmp_path
    )
    # description and versions do not change the image
    assert recipe_hash(parse(_minimal(description="x", versions=["fio"]))) == recipe_hash(parse(_minimal()))
    # file content and extra inputs do
    (tmp_path / "f").write_text("two")
    assert recipe_hash(r, files_dir=tmp_path) != h
    assert recipe_hash(r, files_dir=tmp_path, extra={"project": "a"}) != recipe_hash(
        r, files_dir=tmp_path, extra={"project": "b"}
    )


def test_hash_fixed_vector() -> None:
    r = parse(_minimal())
    assert recipe_hash(r) == recipe_hash(parse(json.loads(json.dumps(_minimal()))))
    assert recipe_hash(r)[:12] == "aa83f9dcbf5c"


def test_project_hash_ignores_bytecode(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    (tmp_path / "target" / "__pycache__").mkdir(parents=True)
    (tmp_path / "target" / "a.py").write_text("x = 1\n")
    h1 = B.project_hash(tmp_path)
    (tmp_path / "target" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"junk")
    assert B.project_hash(tmp_path) == h1
    (tmp_path / "target" / "a.py").write_text("x = 2\n")
    assert B.project_hash(tmp_path) != h1


# --------------------------------------------------------------------------------------------- versions


def test_parse_dpkg_query() -> None:
    text = (
        "open-iscsi\t2.1.8-1\nlibc6:amd64\t2.36-9+deb12u10\n\nbroken line\nmultipath-tools\t0.9.4-3+deb12u1\n"
    )
    assert parse_dpkg_query(text) == {
        "open-iscsi": "2.1.8-1",
        "libc6": "2.36-9+deb12u10",
        "multipath-tools": "0.9.4-3+deb12u1",
    }


def test_image_ref_json_roundtrip() -> None:
    ref = B.ImageRef(
        name="linux-debian12",
        kind=ImageKind.VM,
        hash="ab" * 32,
        release=B.ReleaseInfo("bookworm", "12", "12.11", "6.1.0-50-amd64", {"open-iscsi": "2.1.8-1"}),
        kernel=Path("/c/vmlinuz"),
        initrd=Path("/c/initrd.img"),
        disk=Path("/c/rootfs.img"),
        ssh_key=Path("/c/key"),
        built_at="2026-01-01T00:00:00+00:00",
        build_seconds=12.5,
        size_bytes=1000,
    )
    d = json.loads(json.dumps(ref.to_dict()))
    assert d["kind"] == "vm" and d["release"]["packages"] == {"open-iscsi": "2.1.8-1"}
    assert B.ImageRef.from_dict(d) == ref
    assert ref.hash12 == "abababababab" and ref.directory == Path("/c")
    assert ref.versions == {"debian": "12.11", "kernel": "6.1.0-50-amd64", "open-iscsi": "2.1.8-1"}


# --------------------------------------------------------------------------------------------- build steps


def test_mmdebstrap_command_container(tmp_path: Path) -> None:
    r = parse(
        _minimal(packages=["fio", "iproute2"], hooks=["mkdir -p /x"], files=[{"src": "a", "dest": "/etc/a"}])
    )
    cmd = B.mmdebstrap_command(r, tmp_path / "out.tar", files_dir=tmp_path, record_dir=tmp_path / "rec")
    assert cmd[0] == "mmdebstrap" and "--variant=minbase" in cmd
    assert "--include=fio,iproute2" in cmd
    assert cmd[-3:] == ["bookworm", str(tmp_path / "out.tar"), "http://deb.debian.org/debian"]
    hooks = [c.removeprefix("--customize-hook=") for c in cmd if c.startswith("--customize-hook=")]
    assert any("/etc/a" in h and "chmod 644" in h for h in hooks)
    assert any(h.startswith('chroot "$1" env -i ') and "mkdir -p /x" in h for h in hooks)
    assert "dpkg-query" in hooks[-2] and str(tmp_path / "rec") in hooks[-2]
    assert "debian_version" in hooks[-1]


def test_mmdebstrap_command_vm_adds_key_and_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANLAB_CACHE", str(tmp_path / "cache"))
    r = find_recipe("linux-debian13")
    cmd = B.mmdebstrap_command(r, tmp_path / "root", files_dir=images_dir() / "files", record_dir=tmp_path)
    joined = "\n".join(cmd)
    pub = (tmp_path / "cache" / "ssh" / "id_ed25519.pub").read_text().strip()
    assert pub.startswith("ssh-ed25519 ") and pub in joined
    assert "apt-cache depends linux-image-amd64" in joined and "dpkg -x" in joined
    assert cmd[-3] == "trixie"


def test_module_closure_orders_dependencies_first(tmp_path: Path) -> None:
    (tmp_path / "modules.dep").write_text(
        "kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz kernel/fs/mbcache.ko.xz kernel/lib/crc16.ko.xz\n"
        "kernel/fs/jbd2/jbd2.ko.xz:\n"
        "kernel/fs/mbcache.ko.xz:\n"
        "kernel/lib/crc16.ko.xz:\n"
        "kernel/drivers/block/virtio_blk.ko.xz:\n"
        "kernel/crypto/crc32c_generic.ko.xz:\n"
    )
    order = B._module_closure(tmp_path, ("virtio_pci", "virtio_blk", "ext4", "crc32c_generic"))
    assert order[-2:] == ["kernel/fs/ext4/ext4.ko.xz", "kernel/crypto/crc32c_generic.ko.xz"]
    assert order.index("kernel/fs/jbd2/jbd2.ko.xz") < order.index("kernel/fs/ext4/ext4.ko.xz")
    assert "kernel/drivers/block/virtio_blk.ko.xz" in order
    assert len(order) == len(set(order)) == 6  # virtio_pci is built in here: skipped


def test_pinned_runtime_requirements_are_the_target_deps() -> None:
    reqs = B._pinned_runtime_requirements(B.project_root())
    names = {r.split("==")[0].lower() for r in reqs}
    assert {"crc32c", "jsonschema", "pyyaml", "rich", "uvloop"} <= names
    assert not names & {"docker", "ansible", "pytest-testinfra", "matplotlib"}
    assert all("==" in r for r in reqs)


# --------------------------------------------------------------------------------------------- VM launch


def _vm_ref(tmp_path: Path) -> B.ImageRef:
    d = tmp_path / "linux-debian12" / "abc"
    return B.ImageRef(
        name="linux-debian12",
        kind=ImageKind.VM,
        hash="c" * 64,
        release=B.ReleaseInfo("bookworm", "12", "12.11"),
        kernel=d / "vmlinuz",
        initrd=d / "initrd.img",
        disk=d / "rootfs.img",
        ssh_key=tmp_path / "key",
    )


def test_vm_command_layout(tmp_path: Path) -> None:
    ref = _vm_ref(tmp_path)
    argv = vm_command(
        ref,
        nics=[VmNic("198.18.101.0/24"), VmNic("198.18.102.0/24")],
        ssh_port=2201,
        hostname="init1",
        mgmt_routes=["198.18.0.0/24"],
    )
    assert argv[0] == "qemu-system-x86_64"
    assert argv[argv.index("-accel") + 1] == "tcg" and argv[argv.index("-m") + 1] == "512"
    assert argv[argv.index("-kernel") + 1] == f"{VM_IMAGE_MOUNT}/linux-debian12/vmlinuz"
    assert (
        argv[argv.index("-drive") + 1]
        == "file=/images/linux-debian12/rootfs.img,format=raw,if=virtio,snapshot=on"
    )
    append = argv[argv.index("-append") + 1]
    assert "sanlab.hostname=init1" in append and "net.ifnames=0" in append
    assert (
        "sanlab.net=eth0:10.0.2.15/24:10.0.2.2:198.18.0.0/24,eth1:10.0.3.15/24:10.0.3.2:198.18.101.0/24,"
        "eth2:10.0.4.15/24:10.0.4.2:198.18.102.0/24"
    ) in append
    netdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-netdev"]
    assert netdevs[0] == "user,id=n0,net=10.0.2.0/24,restrict=off,hostfwd=tcp:0.0.0.0:2201-:22"
    assert all("hostfwd" not in n for n in netdevs[1:]) and len(netdevs) == 3
    as_dicts = vm_command(
        ref,
        nics=[
            {"network": "san-a", "subnet": "198.18.101.0/24", "address": "198.18.101.20"},
            {"route": "198.18.102.0/24"},
        ],
        ssh_port=2201,
        hostname="init1",
        mgmt_routes=["198.18.0.0/24"],
    )
    assert as_dicts == argv
    assert ref.mounts == (f"{tmp_path / 'linux-debian12' / 'abc'}:/images/linux-debian12:ro",)
    assert vm_mounts(ref) == {str(tmp_path / "linux-debian12" / "abc"): "/images/linux-debian12"}


def test_vm_command_rejects_bad_input(tmp_path: Path) -> None:
    ref = _vm_ref(tmp_path)
    with pytest.raises(ValueError, match="overlaps its slirp"):
        guest_nics([VmNic("10.0.3.0/24")])
    with pytest.raises(ValueError, match="overlaps another"):
        guest_nics([VmNic("198.18.1.0/24", slirp_net="10.0.2.0/24")])
    with pytest.raises(ValueError):
        guest_nics([VmNic("198.18.1.1/24")])  # host bits set
    with pytest.raises(ValueError, match="at most"):
        guest_nics([VmNic(f"198.18.{i}.0/24") for i in range(9)])
    assert "sanlab.net=eth0:10.0.2.15/24:10.0.2.2:default " in vm_command(ref, nics=[])[-5] + " "
    with pytest.raises(ValueError, match="needs a 'route' or 'subnet'"):
        guest_nics([{"network": "san-a"}])
    with pytest.raises(ValueError, match="memory_mib"):
        vm_command(ref, nics=[], memory_mib=64)
    with pytest.raises(ValueError, match="host name"):
        vm_command(ref, nics=[], hostname="bad name")
    with pytest.raises(ValueError, match="iSCSI name"):
        vm_command(ref, nics=[], initiator_iqn="nope")
    container = B.ImageRef(
        "libiscsi", ImageKind.CONTAINER, "d" * 64, B.ReleaseInfo("bookworm", "12", "12.11")
    )
    with pytest.raises(ValueError, match="not a VM image"):
        vm_command(container, nics=[])


# --------------------------------------------------------------------------------------------- CLI


def test_cli_register_parses_verbs() -> None:
    parser = argparse.ArgumentParser(prog="sanlab")
    register(parser.add_subparsers(dest="command"))
    a = parser.parse_args(["images", "build", "libiscsi", "target", "--force"])
    assert a.names == ["libiscsi", "target"] and a.force is True and callable(a.func)
    assert parser.parse_args(["images", "list", "--json"]).json is True
    assert parser.parse_args(["images", "prune", "--all"]).all is True
    with pytest.raises(SystemExit):
        parser.parse_args(["images"])


def test_cli_build_reports_invalid_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.yml").write_text(
        yaml.safe_dump({"name": "bad", "kind": "vm", "suite": "bookworm", "packages": ["x1"]})
    )
    monkeypatch.setenv("SANLAB_IMAGES_DIR", str(tmp_path))
    parser = argparse.ArgumentParser(prog="sanlab")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["images", "build", "bad"])
    assert args.func(args) == 2
    assert "bad.yml: kernel: required for kind vm" in capsys.readouterr().err


def test_project_images_split_base_and_project_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    r = find_recipe("target")
    monkeypatch.setattr(B, "project_hash", lambda root=None: "source-one")
    h1 = B.image_hash(r)
    monkeypatch.setattr(B, "project_hash", lambda root=None: "source-two")
    h2 = B.image_hash(r)
    assert h1 != h2  # a project change makes a new target image ...
    assert B.base_tag(r) == f"sanlab/target-base:{recipe_hash(r)[:12]}"  # ... on the same Debian base
    cmd = B.mmdebstrap_command(r, Path("/x.tar"), files_dir=images_dir() / "files", record_dir=Path("/rec"))
    assert not any("pip install" in c for c in cmd)  # the base holds no project code
