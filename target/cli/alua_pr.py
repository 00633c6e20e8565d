"""`sanlab target alua ...` and `sanlab target pr ...`: ALUA access states and persistent reservations of a
running target's logical units, over the management API (like targetcli's alua/ and LIO's configfs pr/).

    sanlab target alua show [STORAGE_OBJECT] [--json]     groups, ids, states, members, preferred, delays
    sanlab target alua set STORAGE_OBJECT GROUP STATE     GROUP by name or id; STATE active_optimized|ao,
                                                          active_nonoptimized|an, standby, unavailable,
                                                          offline, transitioning (LIO's numbers work too)
    sanlab target pr show STORAGE_OBJECT [--json]         generation, registrations, reservation, APTPL
    sanlab target pr clear STORAGE_OBJECT                 drop every registration and the reservation

STORAGE_OBJECT is /backstores/<plugin>/<name>, <plugin>/<name>, or a name that is unique. `alua set` is an
implicit transition (initiators get ASYMMETRIC ACCESS STATE CHANGED) and is recorded in the running
configuration, so `saveconfig` keeps it. `pr clear` acts as PERSISTENT RESERVE OUT CLEAR would (registrants get
RESERVATIONS PREEMPTED) and rewrites the APTPL file. Exit codes as for every `sanlab target` verb: 0 done,
1 refused (e.g. a state the group does not support), 2 usage or unknown object/group/state, 3 no target.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from rich.text import Text

from target.cli.main import EXIT_OK, EXIT_USAGE, Setup
from target.cli.manage import _client, _common, _guard, _out


def _common_suppressed(p: argparse.ArgumentParser) -> None:
    """The connection options again on the action's own parser, without defaults that would override the
    values given before the action (`sanlab target alua --socket S set ...`, which is what `batch` runs)."""
    p.add_argument("--socket", "-s", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--url", metavar="URL", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--token", metavar="TOKEN", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def _dump(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------------------------- ALUA


def group_line(g: dict[str, Any]) -> str:
    access = "+".join(k for k in ("implicit", "explicit") if g.get(k)) or "none"
    members = ", ".join(
        f"{m} (rtpi {r})" for m, r in zip(g.get("members", []), g.get("relative_port_ids", []), strict=False)
    )
    return (
        f"{g['name']}  id {g['id']}  {g['state']}{'  preferred' if g.get('preferred') else ''}  "
        f"access {access}  trans_delay {g.get('trans_delay_ms', 0)}ms  nonop_delay {g.get('nonop_delay_ms', 0)}ms"
        f"  implicit_trans {g.get('implicit_trans_secs', 0)}s  status {g.get('status', '-')}"
        f"  io {g.get('media_commands', 0)}  members {members or '-'}"
    )


def cmd_alua_show(args: argparse.Namespace) -> int:
    data = _client(args).get("/v1/alua", storage_object=args.storage_object or "")
    if args.json:
        _dump(data)
        return EXIT_OK
    out = _out()
    for so in data["storage_objects"]:
        out.print(Text(so["storage_object"], style="bold cyan"))
        if not so.get("alua"):
            out.print(Text("  ALUA off (alua_support=0)"))
            continue
        if not so["groups"]:
            out.print(Text("  no target port groups (the LU is not exported through any TPG)"))
        for g in so["groups"]:
            out.print(Text("  " + group_line(g)))
    return EXIT_OK


def cmd_alua_set(args: argparse.Namespace) -> int:
    body = {"storage_object": args.storage_object, "group": args.group, "state": args.state}
    data = _client(args).post("/v1/alua/set", body)
    g = data["group"]
    _out().print(
        Text.assemble(
            (f"{data['storage_object']}: ", "cyan"),
            f"group {g['name']} (id {g['id']}) {data['previous_state']} -> ",
            (g["state"], "green bold"),
        )
    )
    if not data.get("saved"):
        for f in data.get("failed", []):
            sys.stderr.write(f"warning: not recorded in the configuration: {f['path']}: {f['reason']}\n")
    return EXIT_OK


# --------------------------------------------------------------------------------------------- PR


def cmd_pr_show(args: argparse.Namespace) -> int:
    data = _client(args).get("/v1/pr", storage_object=args.storage_object)
    if args.json:
        _dump(data)
        return EXIT_OK
    out = _out()
    aptpl = "on" if data["aptpl"] else "off"
    where = f" ({data['aptpl_file']})" if data.get("aptpl_file") else " (not offered: no state directory)"
    out.print(
        Text.assemble(
            (data["storage_object"], "bold cyan"),
            f"  generation 0x{data['generation']:08x}  APTPL {aptpl}{where}",
        )
    )
    res = data.get("reservation")
    if res is None:
        out.print(Text("  reservation: none"))
    elif res["all_registrants"]:
        out.print(Text(f"  reservation: {res['type']} ({res['scope']}), held by every registrant"))
    else:
        out.print(
            Text(
                f"  reservation: {res['type']} ({res['scope']}), held by {res['holder']} key {res['holder_key']}"
            )
        )
    regs = data.get("registrations", [])
    out.print(Text(f"  registrations: {len(regs)}"))
    for r in regs:
        port = "all target ports" if r["all_tg_pt"] else r["target_port"]
        out.print(
            Text(
                f"    key {r['key']}  {r['initiator_port']}  via {port} (rtpi {r['relative_port_id']})"
                f"{'  [holder]' if r['holder'] else ''}"
            )
        )
    return EXIT_OK


def cmd_pr_clear(args: argparse.Namespace) -> int:
    data = _client(args).post("/v1/pr/clear", {"storage_object": args.storage_object})
    _out().print(
        Text(
            f"{data['storage_object']}: {data['registrations_removed']} registration(s) removed, reservation "
            f"{'released' if data['reservation_released'] else 'none'}, {data['unit_attentions']} I_T nexus(es) "
            f"notified, generation 0x{data['generation']:08x}"
        )
    )
    return EXIT_OK


# --------------------------------------------------------------------------------------------- parsers


def _group_setup(actions: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Any]]) -> Setup:
    def setup(p: argparse.ArgumentParser) -> None:
        _common(p)

        def usage(_: argparse.Namespace) -> int:
            p.print_usage(sys.stderr)
            return EXIT_USAGE

        p.set_defaults(func=usage)
        sub = p.add_subparsers(title="actions", metavar="ACTION", parser_class=type(p))
        for name, help_text, add_args, handler in actions:
            a = sub.add_parser(name, help=help_text)
            _common_suppressed(a)
            add_args(a)
            a.set_defaults(func=_guard(handler))

    return setup


def _alua_show_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("storage_object", nargs="?", default="", help="default: every storage object")
    p.add_argument("--json", action="store_true", help="print JSON")


def _alua_set_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("storage_object", help="/backstores/<plugin>/<name>, <plugin>/<name> or a unique name")
    p.add_argument("group", help="target port group name or id")
    p.add_argument(
        "state", help="active_optimized|ao, active_nonoptimized|an, standby, unavailable, offline, ..."
    )


def _pr_show_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("storage_object")
    p.add_argument("--json", action="store_true", help="print JSON")


def _pr_clear_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("storage_object")


def register_verbs(register_target_command: Callable[[str, str, Setup], None]) -> None:
    """Add `alua` and `pr` (called once by target.cli.main.build_parser)."""
    register_target_command(
        "alua",
        "ALUA target port groups: show, set STORAGE_OBJECT GROUP STATE",
        _group_setup(
            [
                ("show", "groups, ids, states, members, delays", _alua_show_args, cmd_alua_show),
                ("set", "change a group's access state (implicit transition)", _alua_set_args, cmd_alua_set),
            ]
        ),
    )
    register_target_command(
        "pr",
        "persistent reservations: show, clear STORAGE_OBJECT",
        _group_setup(
            [
                ("show", "registrations, reservation, generation, APTPL", _pr_show_args, cmd_pr_show),
                ("clear", "drop every registration and the reservation", _pr_clear_args, cmd_pr_clear),
            ]
        ),
    )
