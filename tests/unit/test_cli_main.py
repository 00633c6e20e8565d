"""The sanlab CLI, run in-process: verbs, exit codes, error output."""

import json
import sys
import types
from pathlib import Path

import pytest

from target.cli import main as cli
from target.config import native
from target.config.model import Config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.startswith("sanlab ")


def test_no_command_prints_usage_and_exits_2(capsys):
    code, _, err = run(capsys)
    assert code == 2
    assert "usage: sanlab" in err


def test_unknown_verb_exits_2(capsys):
    code, _, err = run(capsys, "frobnicate")
    assert code == 2
    assert "invalid choice" in err
    code, _, err = run(capsys, "target", "frobnicate", "--config", "x")
    assert code == 2
    assert "invalid choice" in err


def test_target_without_verb_exits_2(capsys):
    code, _, err = run(capsys, "target")
    assert code == 2
    assert "usage: sanlab target" in err


def test_check_missing_config_argument(capsys):
    code, _, err = run(capsys, "target", "check")
    assert code == 2
    assert "--config" in err


@pytest.mark.parametrize("example", ["lio-saveconfig.json", "native-chap.json"])
def test_check_examples(capsys, example):
    code, out, err = run(capsys, "target", "check", "--config", str(EXAMPLES / example))
    assert code == 0, err
    assert "configuration is valid" in out
    assert "iqn.2026-11.org.example:" in out
    assert "LIO format" in out if example.startswith("lio") else "sanlab format" in out


def test_check_reports_every_error_and_exits_2(capsys, tmp_path):
    doc = json.loads((EXAMPLES / "native-chap.json").read_text())
    doc["targets"][0]["tpgs"][0]["luns"][0]["storage_object"] = "fileio/nope"
    doc["targets"][0]["tpgs"][0]["portals"][0]["ip"] = "not-an-ip"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    code, out, err = run(capsys, "target", "check", "--config", str(path))
    assert code == 2
    assert "2 configuration errors in" in err
    assert "targets[0].tpgs[0].luns[0].storage_object: 'fileio/nope' is not a storage object" in err
    assert "targets[0].tpgs[0].portals[0].ip: 'not-an-ip' is not an IPv4 or IPv6 address" in err
    assert "valid" not in out


def test_check_prints_warnings(capsys, tmp_path):
    doc = json.loads((EXAMPLES / "lio-saveconfig.json").read_text())
    doc["targets"].append({"fabric": "loopback", "wwn": "naa.5001405abcdef012", "tpgs": []})
    path = tmp_path / "saveconfig.json"
    path.write_text(json.dumps(doc))
    code, out, err = run(capsys, "target", "check", "-c", str(path), "--quiet")
    assert code == 0
    assert "warning: targets[1]: loopback target 'naa.5001405abcdef012' skipped" in err
    assert "storage objects" not in out


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ('{"sanlab_config_version": 1, "targets": [], "targets": []}', "duplicate key 'targets'"),
        ('{"hello": 1}', "unknown configuration format"),
        ('{"sanlab_config_version": 9}', "newer than this sanlab understands"),
        ("[" * 100000, "nested too deeply"),
    ],
)
def test_check_bad_files(capsys, tmp_path, content, fragment):
    path = tmp_path / "c.json"
    path.write_text(content)
    code, _, err = run(capsys, "target", "check", "--config", str(path))
    assert code == 2
    assert fragment in err


def test_check_missing_file(capsys, tmp_path):
    code, _, err = run(capsys, "target", "check", "--config", str(tmp_path / "nope.json"))
    assert code == 2
    assert "cannot read" in err


def test_yaml_config(capsys, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sanlab_config_version: 1\nstorage_objects:\n  - {plugin: ramdisk, name: r, size: 1M}\n")
    code, out, _ = run(capsys, "target", "check", "--config", str(path))
    assert code == 0
    assert "ramdisk/r  1 MiB" in out


def test_serve_calls_the_server_with_the_loaded_config(capsys, monkeypatch):
    calls = []

    def fake_run(config, *, log_level="info"):
        calls.append((config, log_level))
        return 0

    monkeypatch.setitem(sys.modules, "target.server", types.SimpleNamespace(run=fake_run))
    code, _, _ = run(
        capsys, "target", "serve", "--config", str(EXAMPLES / "lio-saveconfig.json"), "--log-level", "DEBUG"
    )
    assert code == 0
    ((config, level),) = calls
    assert isinstance(config, Config)
    assert config.targets[0].wwn == "iqn.2026-11.org.example:sanlab"
    assert level == "debug"


def test_serve_passes_the_server_exit_code(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "target.server", types.SimpleNamespace(run=lambda config, log_level: 3))
    code, _, _ = run(capsys, "target", "serve", "--config", str(EXAMPLES / "native-chap.json"))
    assert code == 3


def test_serve_with_a_bad_config_does_not_start(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(
        sys.modules, "target.server", types.SimpleNamespace(run=lambda *a, **k: pytest.fail("started"))
    )
    path = tmp_path / "bad.json"
    path.write_text('{"sanlab_config_version": 1, "storage_objects": [{"plugin": "ramdisk", "name": "r"}]}')
    code, _, err = run(capsys, "target", "serve", "--config", str(path))
    assert code == 2
    assert "storage_objects[0].size: a ramdisk needs a size" in err


def test_convert_lio_to_native(capsys):
    code, out, _ = run(
        capsys, "target", "convert", "--config", str(EXAMPLES / "lio-saveconfig.json"), "--to", "native"
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["sanlab_config_version"] == 1
    assert native.parse_config(doc).targets[0].wwn == "iqn.2026-11.org.example:sanlab"


def test_convert_to_lio_file(capsys, tmp_path):
    out_path = tmp_path / "saveconfig.json"
    code, _, _ = run(
        capsys,
        "target",
        "convert",
        "-c",
        str(EXAMPLES / "native-chap.json"),
        "--to",
        "lio",
        "-o",
        str(out_path),
    )
    assert code == 0
    doc = json.loads(out_path.read_text())
    assert doc["targets"][0]["fabric"] == "iscsi"
    code, _, _ = run(capsys, "target", "check", "-c", str(out_path), "-q")
    assert code == 0


def test_registered_commands(capsys, monkeypatch):
    monkeypatch.setattr(cli, "_extra_commands", [])

    def setup(parser):
        parser.add_argument("scenario")
        parser.set_defaults(func=lambda args: 7 if args.scenario == "x.yml" else 1)

    cli.register_command("run", "run a drill", setup)
    code, _, _ = run(capsys, "run", "x.yml")
    assert code == 7


def test_serve_failure_is_one_line_and_exit_1(capsys, monkeypatch):
    def broken(config, *, log_level="info"):
        raise RuntimeError("fileio/disk0: directory /nope does not exist")

    monkeypatch.setitem(sys.modules, "target.server", types.SimpleNamespace(run=broken))
    code, _, err = run(capsys, "target", "serve", "--config", str(EXAMPLES / "lio-saveconfig.json"))
    assert code == 1
    assert "target failed: fileio/disk0: directory /nope does not exist" in err
    assert "Traceback" not in err
