"""Quick-start: start a target from a LIO-style config and show real initiators using it.

`make demo` runs `python -m lab.quickstart`. It writes `results/quickstart/<run-id>/` (the config it used, the
target's log, every initiator's output, summary.json and report.md) and prints that directory on its last line.
Exit status 0 when every step passed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lab.netutil import free_port, wait_for_port

IQN = "iqn.2026-11.org.example:sanlab-demo"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Step:
    name: str
    command: list[str]
    passed: bool
    seconds: float
    output: str


def lio_saveconfig(image: Path, port: int, size: int) -> dict[str, object]:
    """A saveconfig.json as targetcli writes it: one sparse fileio LUN, one TPG in demo mode."""
    return {
        "fabric_modules": [],
        "storage_objects": [
            {
                "plugin": "fileio",
                "name": "disk0",
                "dev": str(image),
                "size": size,
                "write_back": True,
                "wwn": "5f0e2c4a-7d1b-4c55-9a3e-000000000001",
                "attributes": {"block_size": 512, "emulate_tpu": 1, "emulate_tpws": 1},
            }
        ],
        "targets": [
            {
                "fabric": "iscsi",
                "wwn": IQN,
                "tpgs": [
                    {
                        "tag": 1,
                        "enable": True,
                        "attributes": {
                            "authentication": 0,
                            "generate_node_acls": 1,
                            "cache_dynamic_acls": 1,
                            "demo_mode_write_protect": 0,
                        },
                        "parameters": {"HeaderDigest": "CRC32C,None", "DataDigest": "CRC32C,None"},
                        "portals": [{"ip_address": "127.0.0.1", "port": port, "iser": False}],
                        "luns": [{"index": 0, "storage_object": "/backstores/fileio/disk0"}],
                        "node_acls": [],
                    }
                ],
            }
        ],
    }


def run_step(name: str, command: list[str], expect: str | None = None, timeout: float = 120.0) -> Step:
    t0 = time.monotonic()
    try:
        cp = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        out = cp.stdout + cp.stderr
        passed = cp.returncode == 0 and (expect is None or expect in out)
    except (OSError, subprocess.TimeoutExpired) as e:
        out, passed = f"{type(e).__name__}: {e}", False
    return Step(name, command, passed, round(time.monotonic() - t0, 3), out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", default=str(ROOT / "results"), help="results root (default: results/)")
    ap.add_argument("--size-mib", type=int, default=256)
    args = ap.parse_args(argv)
    console = Console()
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.results) / "quickstart" / run_id
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    image = out / "disk0.img"
    config = out / "saveconfig.json"
    config.write_text(json.dumps(lio_saveconfig(image, port, args.size_mib << 20), indent=2))
    sanlab = str(Path(sys.executable).with_name("sanlab"))
    console.print(f"[bold]sanlab quick-start[/bold]: target {IQN} on 127.0.0.1:{port}, config {config}")
    log = (out / "target.log").open("wb")
    proc = subprocess.Popen([sanlab, "target", "serve", "--config", str(config)], stdout=log, stderr=log)
    steps: list[Step] = []
    url = f"iscsi://127.0.0.1:{port}/{IQN}/0"
    try:
        up = wait_for_port("127.0.0.1", port, 30.0, proc, connect_timeout_s=0.5)
        steps.append(Step("target listening", [sanlab, "target", "serve"], up, 0.0, ""))
        if up:
            steps += [
                run_step(
                    "discovery and LUN listing (libiscsi iscsi-ls)",
                    ["iscsi-ls", "-s", f"iscsi://127.0.0.1:{port}"],
                    expect=IQN,
                ),
                run_step("standard INQUIRY (libiscsi iscsi-inq)", ["iscsi-inq", url], expect="SANLAB"),
                run_step("READ CAPACITY(16) (libiscsi)", ["iscsi-readcapacity16", url]),
                run_step("image info (qemu iSCSI driver)", ["qemu-img", "info", url], expect="virtual size"),
                run_step(
                    "write a pattern, read it back verified (qemu-io)",
                    [
                        "qemu-io",
                        "-f",
                        "raw",
                        "-c",
                        "write -P 0x5a 1M 256k",
                        "-c",
                        "read -P 0x5a 1M 256k",
                        url,
                    ],
                    expect="read 262144/262144",
                ),
            ]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if image.exists():
            image.unlink()  # sparse, but do not leave 256 MiB files behind in results/
    table = Table(title="quick-start")
    table.add_column("step")
    table.add_column("result")
    table.add_column("s", justify="right")
    for s in steps:
        table.add_row(
            s.name, "[green]passed[/green]" if s.passed else "[red]FAILED[/red]", f"{s.seconds:.2f}"
        )
    console.print(table)
    for s in steps:
        if not s.passed:
            console.print(f"[red]{s.name}[/red]: {' '.join(s.command)}\n{s.output.strip()[-2000:]}")
    passed = bool(steps) and all(s.passed for s in steps)
    summary = {
        "scenario": "quickstart",
        "run_id": run_id,
        "target": IQN,
        "port": port,
        "passed": passed,
        "steps": [asdict(s) for s in steps],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = [
        "# sanlab quick-start",
        "",
        f"run `{run_id}`, target `{IQN}`",
        "",
        "| step | result | s |",
        "|---|---|---|",
    ]
    lines += [f"| {s.name} | {'passed' if s.passed else 'FAILED'} | {s.seconds:.2f} |" for s in steps]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    console.print("report: " + str(out / "report.md"))
    print(out)
    return 0 if passed else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
