"""`sanlab target` verbs that manage a running target through its management API (a thin view: every verb is
one HTTP request to the socket the target serves).

    sanlab target show [PATH] [--json]              the object tree (targetcli paths)
    sanlab target create PATH [key=value ...]       e.g. create /backstores/fileio/d1 dev=/x.img size=1G
    sanlab target set PATH [GROUP] key=value ...    GROUP: attribute | parameter | auth (else properties)
    sanlab target delete PATH
    sanlab target apply FILE [--partial] [--dry-run]   LIO saveconfig.json or native: print and apply the diff
    sanlab target saveconfig [FILE] [--format F]    FILE on this side; without FILE the target saves it
    sanlab target restoreconfig FILE [--partial]    apply FILE (all-or-nothing unless --partial)
    sanlab target batch [FILE|-]                    one command per line; stops at the first failure
    sanlab target stats [PATH] [--json]             counters; sessions [--json]; reload
    sanlab target alua show|set ..., pr show|clear ...   ALUA states and persistent reservations (alua_pr.py)

The target is found with no options when one runs on the machine (default socket), else `--socket` or
$SANLAB_SOCKET; `--url http://host:port` and `--token` (or $SANLAB_TOKEN) reach a TCP API.
Exit codes: 0 success, 1 the target refused or failed (every failed object is printed), 2 usage, 3 no target.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import socket
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from target.cli.main import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Setup

EXIT_UNREACHABLE = 3
TIMEOUT_S = 120.0


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error") or f"HTTP {status}")
        self.status = status
        self.body = body


class Unreachable(Exception):
    pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = TIMEOUT_S) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class Client:
    """The management API client (Unix socket by default, or HTTP over TCP with a bearer token)."""

    def __init__(
        self, socket_path: str | None = None, url: str | None = None, token: str | None = None
    ) -> None:
        from target.api.http import TOKEN_ENV, find_socket

        self.url = url
        self.token = token or os.environ.get(TOKEN_ENV, "")
        self.socket_path = None if url else (socket_path or find_socket())

    def _conn(self) -> http.client.HTTPConnection:
        if self.url:
            u = urllib.parse.urlsplit(self.url)
            return http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=TIMEOUT_S)
        assert self.socket_path is not None
        return _UnixConnection(self.socket_path)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        conn = self._conn()
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            where = self.url or self.socket_path
            raise Unreachable(f"no target answers at {where} ({exc.strerror or exc})") from None
        except OSError as exc:
            raise Unreachable(f"management API: {exc}") from None
        finally:
            conn.close()
        if resp.getheader("Content-Type", "").startswith("text/plain"):
            return raw.decode()
        try:
            data = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            data = {"error": raw.decode(errors="replace")}
        if resp.status >= 400 and not (resp.status == 409 and "applied" in data):
            raise ApiError(resp.status, data)
        return data

    def get(self, endpoint: str, **query: str) -> Any:
        q = urllib.parse.urlencode({k: v for k, v in query.items() if v})
        return self.request("GET", f"{endpoint}?{q}" if q else endpoint)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)


# --------------------------------------------------------------------------------------------- output


def _out() -> Console:
    return Console(
        file=sys.stdout, soft_wrap=True, highlight=False, width=None if sys.stdout.isatty() else 240
    )


def _err() -> Console:
    return Console(file=sys.stderr, soft_wrap=True, highlight=False)


def _props_text(node: dict[str, Any]) -> str:
    props = node.get("properties") or {}
    kind = node.get("kind")
    if kind == "storage_object":
        return f"size={props.get('size')} dev={props.get('dev') or '-'} block_size={props.get('block_size')}"
    if kind == "lun":
        return f"-> {props.get('storage_object')}"
    if kind == "mapped_lun":
        return f"-> lun{props.get('tpg_lun')}{' (ro)' if props.get('write_protect') else ''}"
    if kind == "tpg":
        return "enabled" if props.get("enable") else "disabled"
    return ""


def _tree(node: dict[str, Any], parent: Tree | None = None) -> Tree:
    name = node["path"].rsplit("/", 1)[-1] or "/"
    label = Text.assemble((name, "bold" if node["kind"] == "group" else "cyan"), "  ", _props_text(node))
    if parent is None:
        t = Tree(label)
    else:
        t = parent.add(label)
    for c in node.get("children", []):
        _tree(c, t)
    return t


def print_report(report: dict[str, Any], *, verb: str) -> int:
    out = _out()
    if report.get("dry_run"):
        out.print(Text("dry run: nothing changed", style="yellow"))
    for line in report.get("changes", []):
        style = {"+": "green", "-": "red", "~": "yellow"}.get(line[:1], "")
        out.print(Text(line, style=style))
    for w in report.get("warnings", []):
        _err().print(Text.assemble(("warning: ", "yellow bold"), w))
    failed = report.get("failed", [])
    for f in failed:
        _err().print(Text.assemble(("not applied: ", "red bold"), f"{f['path']}: {f['reason']}"))
    if not report.get("applied", True):
        _err().print(
            Text(
                f"{verb}: {len(failed)} object(s) could not be applied; nothing was changed "
                "(use --partial to apply the rest)",
                style="red",
            )
        )
        return EXIT_FAILURE
    if not report.get("changes"):
        out.print(Text("no changes", style="dim"))
    if failed:
        _err().print(Text(f"{verb}: applied partially, {len(failed)} object(s) skipped", style="yellow"))
        return EXIT_FAILURE
    return EXIT_OK


def _kv(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{item!r} is not key=value")
        out[key] = value
    return out


_GROUPS = {
    "attribute": "attributes",
    "attributes": "attributes",
    "attrib": "attributes",
    "parameter": "parameters",
    "parameters": "parameters",
    "param": "parameters",
    "auth": "auth",
}


# --------------------------------------------------------------------------------------------- verbs


def _client(args: argparse.Namespace) -> Client:
    return Client(getattr(args, "socket", None), getattr(args, "url", None), getattr(args, "token", None))


def _guard(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except Unreachable as exc:
            _err().print(Text(str(exc), style="red"))
            return EXIT_UNREACHABLE
        except ApiError as exc:
            _err().print(Text(f"error: {exc}", style="red"))
            for e in exc.body.get("errors", []):
                _err().print(Text(f"  error: {e}", style="red"))
            return EXIT_USAGE if exc.status in (400, 404) else EXIT_FAILURE
        except ValueError as exc:
            _err().print(Text(f"error: {exc}", style="red"))
            return EXIT_USAGE

    return run


def cmd_show(args: argparse.Namespace) -> int:
    data = _client(args).get("/v1/tree", path=args.path or "/", secrets="1" if args.secrets else "")
    if args.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        _out().print(_tree(data))
    return EXIT_OK


def cmd_create(args: argparse.Namespace) -> int:
    report = _client(args).post("/v1/create", {"path": args.path, "properties": _kv(args.props)})
    return print_report(report, verb="create")


def cmd_set(args: argparse.Namespace) -> int:
    items = list(args.props)
    group = None
    if items and "=" not in items[0]:
        group = _GROUPS.get(items[0].lower())
        if group is None:
            raise ValueError(f"unknown group {items[0]!r} (attribute, parameter, auth)")
        items = items[1:]
    props = _kv(items)
    if not props:
        raise ValueError("set needs key=value")
    body = {group: props} if group else props
    return print_report(_client(args).post("/v1/set", {"path": args.path, "properties": body}), verb="set")


def cmd_delete(args: argparse.Namespace) -> int:
    return print_report(_client(args).post("/v1/delete", {"path": args.path}), verb="delete")


def _read_doc(path: str) -> Any:
    from target.config.load import parse_text

    if path == "-":
        text = sys.stdin.read()
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    return parse_text(text, yaml_syntax=path.endswith((".yml", ".yaml")))


def cmd_apply(args: argparse.Namespace, verb: str = "apply") -> int:
    from target.config.errors import ConfigError

    try:
        doc = _read_doc(args.file)
    except OSError as exc:
        _err().print(Text(f"cannot read {args.file}: {exc.strerror or exc}", style="red"))
        return EXIT_USAGE
    except ConfigError as exc:
        for e in exc.errors:
            _err().print(Text(f"error: {e}", style="red"))
        return EXIT_USAGE
    body = {"config": doc, "partial": args.partial, "dry_run": getattr(args, "dry_run", False)}
    return print_report(_client(args).post("/v1/apply", body), verb=verb)


def cmd_restoreconfig(args: argparse.Namespace) -> int:
    return cmd_apply(args, verb="restoreconfig")


def cmd_saveconfig(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.file and args.file != "-":
        from target.config.atomic import write_atomic

        doc = client.get("/v1/config", format=args.format)
        write_atomic(args.file, (json.dumps(doc, indent=2) + "\n").encode())
        _out().print(f"saved to {args.file}")
    elif args.file == "-":
        sys.stdout.write(json.dumps(client.get("/v1/config", format=args.format), indent=2) + "\n")
    else:
        saved = client.post("/v1/saveconfig", {"format": args.format})
        _out().print(f"saved to {saved['saved']} (on the target)")
    return EXIT_OK


def cmd_reload(args: argparse.Namespace) -> int:
    return print_report(_client(args).post("/v1/reload", {}), verb="reload")


def cmd_sessions(args: argparse.Namespace) -> int:
    data = _client(args).get("/v1/sessions")
    if args.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return EXIT_OK
    for s in data["sessions"]:
        kind = "discovery" if s["discovery"] else f"{s['target']} tpg{s['tpg']} luns {s['luns']}"
        _out().print(f"tsih {s['tsih']}  {s['initiator']} isid {s['isid']}  {kind}  cids {s['connections']}")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    data = _client(args).get("/v1/stats")
    want = (args.path or "").strip("/")
    if want:
        parts = want.split("/")
        data = {"targets": [t for t in data["targets"] if t["name"] == (parts[1] if len(parts) > 1 else "")]}
    if args.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return EXIT_OK
    out = _out()

    def line(name: str, s: dict[str, Any]) -> str:
        n = max(1, s["commands"])
        avg_ms = s["latency_seconds_sum"] / n * 1000
        return (
            f"{name}: cmds={s['commands']} rd={s['reads']} wr={s['writes']} in={s['bytes_written']}B "
            f"out={s['bytes_read']}B err={s['errors']} tmf={s['tmf_requests']} digest={s['digest_errors']} "
            f"avg={avg_ms:.3f}ms"
        )

    for t in data["targets"]:
        out.print(line(t["name"], t["stats"]))
        for g in t["tpgs"]:
            out.print("  " + line(f"tpg{g['tag']}", g["stats"]))
            for lun in g["luns"]:
                out.print("    " + line(f"lun{lun['lun']} ({lun['storage_object']})", lun["stats"]))
            for s in g["sessions"]:
                out.print("    " + line(f"session {s['initiator']} {s['isid']}", s["stats"]))
                for c in s["connections"]:
                    out.print("      " + line(f"cid {c['cid']} {c['local']} <- {c['peer']}", c["stats"]))
    return EXIT_OK


def cmd_batch(args: argparse.Namespace) -> int:
    """One `sanlab target` command per line ('#' comments); the first failure stops with its exit code."""
    from target.cli.main import main

    if args.file in (None, "-"):
        lines = sys.stdin.read().splitlines()
        name = "stdin"
    else:
        try:
            with open(args.file, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as exc:
            _err().print(Text(f"cannot read {args.file}: {exc.strerror or exc}", style="red"))
            return EXIT_USAGE
        name = args.file
    extra: list[str] = []
    if args.socket:
        extra += ["--socket", args.socket]
    if args.url:
        extra += ["--url", args.url]
    if args.token:
        extra += ["--token", args.token]
    done = 0
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        try:
            words = shlex.split(text)
        except ValueError as exc:
            _err().print(Text(f"{name}:{number}: {exc}", style="red"))
            return EXIT_USAGE
        if words[:2] == ["sanlab", "target"]:
            words = words[2:]
        elif words[:1] == ["target"]:
            words = words[1:]
        if not words or words[0] in ("batch", "serve"):
            _err().print(
                Text(f"{name}:{number}: {words[0] if words else '(empty)'} is not allowed in a batch")
            )
            return EXIT_USAGE
        code = main(["target", words[0], *extra, *words[1:]])
        if code != EXIT_OK:
            _err().print(Text(f"{name}:{number}: failed (exit {code}): {text}", style="red bold"))
            return code
        done += 1
    _out().print(Text(f"batch: {done} command(s) succeeded", style="green"))
    return EXIT_OK


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--socket", "-s", metavar="PATH", help="management socket (default: the running target's)")
    p.add_argument("--url", metavar="URL", help="management API over TCP, e.g. http://127.0.0.1:3270")
    p.add_argument("--token", metavar="TOKEN", help="bearer token for --url (or $SANLAB_TOKEN)")


def _setup(handler: Any, *args_fn: Any) -> Any:
    def setup(p: argparse.ArgumentParser) -> None:
        _common(p)
        for fn in args_fn:
            fn(p)
        p.set_defaults(func=_guard(handler))

    return setup


def register_verbs(register_target_command: Callable[[str, str, Setup], None]) -> None:
    """Add this module's verbs (called once by target.cli.main.build_parser)."""
    register_target_command(
        "show",
        "show the running target's object tree",
        _setup(
            cmd_show,
            lambda p: p.add_argument("path", nargs="?", default="/"),
            lambda p: p.add_argument("--json", action="store_true", help="print the tree as JSON"),
            lambda p: p.add_argument("--secrets", action="store_true", help="show CHAP passwords"),
        ),
    )
    register_target_command(
        "create",
        "create an object by path (key=value properties)",
        _setup(cmd_create, lambda p: p.add_argument("path"), lambda p: p.add_argument("props", nargs="*")),
    )
    register_target_command(
        "set",
        "change properties, or a group: attribute|parameter|auth key=value ...",
        _setup(cmd_set, lambda p: p.add_argument("path"), lambda p: p.add_argument("props", nargs="+")),
    )
    register_target_command(
        "delete", "delete an object by path", _setup(cmd_delete, lambda p: p.add_argument("path"))
    )

    def apply_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", help="LIO saveconfig.json or native config ('-' for stdin)")
        p.add_argument("--partial", action="store_true", help="apply what can be applied, report the rest")
        p.add_argument("--dry-run", action="store_true", help="print the difference only")

    register_target_command(
        "apply",
        "bring the running target to a config file's state (prints the diff)",
        _setup(cmd_apply, apply_args),
    )
    register_target_command(
        "restoreconfig",
        "restore a saved configuration (all-or-nothing unless --partial)",
        _setup(cmd_restoreconfig, apply_args),
    )

    def save_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", nargs="?", help="write here ('-' stdout); default: the target saves it")
        p.add_argument("--format", choices=("native", "lio"), default="native")

    register_target_command("saveconfig", "save the running configuration", _setup(cmd_saveconfig, save_args))
    register_target_command(
        "batch",
        "run commands from a file or stdin, stop at the first failure",
        _setup(cmd_batch, lambda p: p.add_argument("file", nargs="?", default="-")),
    )
    register_target_command(
        "stats",
        "I/O counters per target, TPG, LUN, session, connection",
        _setup(
            cmd_stats,
            lambda p: p.add_argument("path", nargs="?", default=""),
            lambda p: p.add_argument("--json", action="store_true"),
        ),
    )
    register_target_command(
        "sessions",
        "list live sessions",
        _setup(cmd_sessions, lambda p: p.add_argument("--json", action="store_true")),
    )
    register_target_command(
        "reload", "re-read the startup configuration file (as SIGHUP)", _setup(cmd_reload)
    )
