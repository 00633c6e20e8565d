"""The `sanlab` command line: a thin layer over the library.

    sanlab --version
    sanlab target serve   --config FILE [--log-level LEVEL]   run a target in the foreground
    sanlab target check   --config FILE                       validate, print the object tree (exit 0 / 2)
    sanlab target convert --config FILE --to native|lio [-o OUT]   translate between the two formats

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error (every error is printed, each
with its JSON path). Other parts of the product add verbs (`sanlab up|down|run|report|bench|images`, more
`sanlab target ...` verbs) through `register_command` / `register_target_command`, or by providing a module
listed in `EXTENSION_MODULES` with a ``register(subparsers)`` function; unknown verbs print usage and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import NoReturn

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from target.config.errors import ConfigError
from target.config.load import Format, load_config_with_format
from target.config.model import AuthConfig, Config, StorageObjectConfig

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

LOG_LEVELS = ("debug", "info", "warning", "error")
#: modules that may add top-level verbs: each defines register(subparsers: argparse._SubParsersAction)
EXTENSION_MODULES = ("lab.cli", "lab.bench.cli")

Handler = Callable[[argparse.Namespace], int]
Setup = Callable[[argparse.ArgumentParser], None]

_extra_commands: list[tuple[str, str, Setup]] = []
_extra_target_commands: list[tuple[str, str, Setup]] = []


def register_command(name: str, help_text: str, setup: Setup) -> None:
    """Add a top-level verb; `setup` adds its arguments and calls parser.set_defaults(func=handler)."""
    _extra_commands.append((name, help_text, setup))


def register_target_command(name: str, help_text: str, setup: Setup) -> None:
    """Add a `sanlab target <name>` verb (same contract as register_command)."""
    _extra_target_commands.append((name, help_text, setup))


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main() can return the exit code (in-process tests)."""

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self._print_message(message, sys.stderr)
        raise _ParserExit(status)


class _ParserExit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _version() -> str:
    try:
        return metadata.version("sanlab")
    except metadata.PackageNotFoundError:
        return "unknown"


#: modules that add `sanlab target` verbs at import (register_target_command)
TARGET_EXTENSION_MODULES = ("target.cli.manage", "target.cli.alua_pr")
_loaded_target_extensions: set[str] = set()


def build_parser() -> argparse.ArgumentParser:
    for module_name in TARGET_EXTENSION_MODULES:
        if module_name in _loaded_target_extensions:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        _loaded_target_extensions.add(module_name)
        module.register_verbs(register_target_command)
    parser = _Parser(prog="sanlab", description="Userspace iSCSI target and virtual SAN lab.")
    parser.add_argument("--version", action="version", version=f"sanlab {_version()}")
    parser.set_defaults(func=_usage(parser))
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)

    target = commands.add_parser("target", help="run, check and manage an iSCSI target")
    target.set_defaults(func=_usage(target))
    verbs = target.add_subparsers(title="target commands", metavar="VERB", parser_class=_Parser)

    serve = verbs.add_parser("serve", help="run a target in the foreground until SIGINT/SIGTERM")
    _config_arg(serve)
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info", type=str.lower)
    serve.add_argument(
        "--socket", metavar="PATH", help="management API socket (default /run/sanlab/target.sock)"
    )
    serve.add_argument("--no-api", action="store_true", help="serve no management API")
    serve.add_argument("--api-port", type=int, metavar="PORT", help="also serve the API on 127.0.0.1:PORT")
    serve.add_argument("--api-address", default="127.0.0.1", help="address for --api-port")
    serve.add_argument("--token", help="bearer token for --api-port (or $SANLAB_TOKEN)")
    serve.add_argument(
        "--metrics-port", type=int, metavar="PORT", help="Prometheus /metrics on 127.0.0.1:PORT"
    )
    serve.add_argument(
        "--save",
        nargs="?",
        const="",
        metavar="FILE",
        help="save the running config after every change (default FILE: <state_dir>/saveconfig.json)",
    )
    serve.add_argument("--keep", type=int, default=3, help="previous saved copies kept (FILE.1 .. FILE.N)")
    serve.set_defaults(func=cmd_target_serve)

    check = verbs.add_parser("check", help="validate a configuration and print its object tree")
    _config_arg(check)
    check.add_argument("--quiet", "-q", action="store_true", help="print only errors and warnings")
    check.set_defaults(func=cmd_target_check)

    convert = verbs.add_parser("convert", help="translate a configuration between native and LIO format")
    _config_arg(convert)
    convert.add_argument("--to", choices=("native", "lio"), default="native", help="output format")
    convert.add_argument("--output", "-o", metavar="FILE", help="write here (atomically) instead of stdout")
    convert.set_defaults(func=cmd_target_convert)

    for name, help_text, setup in _extra_target_commands:
        setup(verbs.add_parser(name, help=help_text))
    for name, help_text, setup in _extra_commands:
        setup(commands.add_parser(name, help=help_text))
    for module_name in EXTENSION_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        register = getattr(module, "register", None)
        if callable(register):
            register(commands)
    return parser


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", "-c", required=True, metavar="FILE", help="sanlab JSON config or LIO saveconfig.json"
    )


def _usage(parser: argparse.ArgumentParser) -> Handler:
    def show(_: argparse.Namespace) -> int:
        parser.print_usage(sys.stderr)
        return EXIT_USAGE

    return show


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _ParserExit as e:
        return e.status
    func: Handler = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130


# ---------------------------------------------------------------------------------------------- output


def _out() -> Console:
    # a pipe or a file gets whole lines (rich would cut tree lines at 80 columns)
    width = None if sys.stdout.isatty() else 240
    return Console(file=sys.stdout, soft_wrap=True, highlight=False, width=width)


def _err() -> Console:
    return Console(file=sys.stderr, soft_wrap=True, highlight=False)


def _print_warnings(warnings: list[str]) -> None:
    if not warnings:
        return
    con = _err()
    for w in warnings:
        con.print(Text.assemble(("warning: ", "yellow bold"), w))


def _print_config_error(err: ConfigError) -> None:
    con = _err()
    where = f" in {err.source}" if err.source else ""
    n = len(err.errors)
    con.print(Text(f"{n} configuration error{'s' if n != 1 else ''}{where}:", style="red bold"))
    for e in err.errors:
        con.print(Text.assemble(("  error: ", "red"), e))


def _load(path: str) -> tuple[Config, Format] | None:
    try:
        cfg, warnings, fmt = load_config_with_format(path)
    except ConfigError as e:
        _print_config_error(e)
        return None
    _print_warnings(warnings)
    return cfg, fmt


# ---------------------------------------------------------------------------------------------- verbs


def cmd_target_serve(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_USAGE
    cfg, _ = loaded
    try:
        # the runtime is imported only when serving (and is written by another team: look it up by name)
        server = importlib.import_module("target.server")
    except ImportError as e:
        _err().print(Text(f"cannot start the target: {e}", style="red"))
        return EXIT_FAILURE
    run: Callable[..., int] = server.run
    extra: dict[str, object] = {}
    if hasattr(server, "ManagementOptions"):
        try:
            extra["management"] = _management_options(args, cfg, server)
        except ValueError as e:
            _err().print(Text(str(e), style="red"))
            return EXIT_USAGE
    try:
        return int(run(cfg, log_level=args.log_level, **extra))
    except Exception as e:  # the CLI edge: one readable line, the traceback only when debugging
        if args.log_level == "debug":
            raise
        _err().print(Text(f"target failed: {e}", style="red"))
        return EXIT_FAILURE


def _management_options(args: argparse.Namespace, cfg: Config, server: object) -> object:
    import os
    from pathlib import Path

    from target.api.http import SOCKET_ENV, TOKEN_ENV, default_socket_path

    options: Callable[..., object] = server.ManagementOptions  # type: ignore[attr-defined]
    socket_path = None
    if not args.no_api:
        socket_path = args.socket or os.environ.get(SOCKET_ENV) or default_socket_path()
    tcp = None
    token = args.token or os.environ.get(TOKEN_ENV, "")
    if args.api_port:
        if not token:
            raise ValueError("--api-port needs --token (or $SANLAB_TOKEN)")
        tcp = (args.api_address, args.api_port)
    save_path = None
    if args.save is not None:
        save_path = args.save or str(Path(cfg.state_dir) / "saveconfig.json")
    return options(
        socket_path=socket_path,
        tcp=tcp,
        token=token,
        metrics=("127.0.0.1", args.metrics_port) if args.metrics_port else None,
        config_path=os.path.abspath(args.config),
        save_path=save_path,
        keep=args.keep,
        reload_on_sighup=True,
    )


def cmd_target_check(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_USAGE
    cfg, fmt = loaded
    if not args.quiet:
        _out().print(
            summary_tree(cfg, title=f"{args.config} ({'sanlab' if fmt == 'native' else 'LIO'} format)")
        )
    _out().print(Text("configuration is valid", style="green"))
    return EXIT_OK


def cmd_target_convert(args: argparse.Namespace) -> int:
    from target.config.lio import export_saveconfig
    from target.config.load import save_config
    from target.config.native import dump_config

    loaded = _load(args.config)
    if loaded is None:
        return EXIT_USAGE
    cfg, _ = loaded
    if args.output:
        try:
            save_config(cfg, args.output, fmt=args.to)
        except OSError as e:
            _err().print(Text(f"cannot write {args.output}: {e.strerror or e}", style="red"))
            return EXIT_FAILURE
        return EXIT_OK
    doc = dump_config(cfg) if args.to == "native" else export_saveconfig(cfg)
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------- summary


def _human_size(n: int) -> str:
    if n == 0:
        return "size of backing file/device"
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:.1f} {unit}" if value % 1 else f"{int(value)} {unit}"
    return f"{n} B"


def _auth_text(auth: AuthConfig) -> str:
    if not auth.enabled:
        return "no CHAP"
    return f"CHAP user {auth.userid!r}" + (
        f", mutual user {auth.mutual_userid!r}" if auth.mutual_userid else ""
    )


def _so_text(so: StorageObjectConfig) -> str:
    parts = [so.path, _human_size(so.size)]
    if so.dev:
        parts.append(so.dev)
    flags = [f"{so.block_size}-byte blocks"]
    if so.plugin != "ramdisk":
        flags.append("write-back" if so.write_back else "write-through")
    if so.readonly:
        flags.append("read-only")
    return "  ".join(parts) + f"  ({', '.join(flags)})"


def summary_tree(cfg: Config, *, title: str = "configuration") -> Tree:
    """The object tree as targetcli's `ls` shows it: storage objects, then targets -> TPGs -> LUNs/ACLs."""
    root = Tree(Text(title, style="bold"))
    sos = root.add(Text(f"storage objects ({len(cfg.storage_objects)})", style="bold"))
    for so in cfg.storage_objects:
        sos.add(Text(_so_text(so)))
    tgts = root.add(Text(f"targets ({len(cfg.targets)})", style="bold"))
    for t in cfg.targets:
        tnode = tgts.add(Text(t.wwn + (f"  alias {t.alias!r}" if t.alias else ""), style="cyan"))
        for tpg in t.tpgs:
            portals = ", ".join(
                f"[{p.ip}]:{p.port}" if ":" in p.ip else f"{p.ip}:{p.port}" for p in tpg.portals
            )
            state = "enabled" if tpg.enable else "disabled"
            gnode = tnode.add(
                Text(f"tpg {tpg.tag} ({state})  portals: {portals or 'none'}  {_auth_text(tpg.auth)}")
            )
            lnode = gnode.add(Text(f"luns ({len(tpg.luns)})"))
            for lun in tpg.luns:
                lnode.add(Text(f"lun{lun.index} -> {lun.storage_object}"))
            anode = gnode.add(Text(f"acls ({len(tpg.node_acls)})"))
            for acl in tpg.node_acls:
                maps = ", ".join(
                    f"{m.index}->lun{m.tpg_lun}{' (ro)' if m.write_protect else ''}" for m in acl.mapped_luns
                )
                anode.add(Text(f"{acl.node_wwn}  {_auth_text(acl.auth)}  mapped: {maps or 'none'}"))
            if tpg.attributes.get("generate_node_acls") in (1, "1"):
                gnode.add(Text("demo mode: any initiator may log in (generate_node_acls=1)", style="yellow"))
    disc = "enforced, " if cfg.discovery_auth_enforced else ""
    root.add(Text(f"discovery: {disc}{_auth_text(cfg.discovery_auth)}"))
    return root


if __name__ == "__main__":
    sys.exit(main())
