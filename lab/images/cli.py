"""`sanlab images build|list|prune` (added to the `sanlab` CLI by lab/cli.py through `register`).

    sanlab images build [NAME ...] [--all] [--force]   build what is missing (default: every recipe)
    sanlab images list [--json]                        built images with hash, size, build time, versions
    sanlab images prune [--all]                        remove outdated builds (--all: every build)

Exit codes: 0 success, 1 build failure, 2 unknown image or invalid recipe.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from lab.images.build import ImageBuildError, ensure_image, list_images, prune
from lab.images.docker_setup import DockerSetupError
from lab.images.recipe import RecipeError, images_dir, load_recipe, recipe_names

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def _log(msg: str) -> None:
    print(msg, flush=True)


def cmd_build(args: argparse.Namespace) -> int:
    names: list[str] = list(args.names) or recipe_names()
    problems: list[str] = []
    for n in names:
        try:
            load_recipe(images_dir() / f"{n}.yml")
        except RecipeError as exc:
            problems += [f"{exc.source}: {e}" for e in exc.errors]
    if problems:
        for p in problems:
            _err(p)
        return EXIT_USAGE
    rows = []
    for n in names:
        try:
            ref = ensure_image(n, log=_log, force=args.force)
        except (ImageBuildError, DockerSetupError, OSError) as exc:
            _err(f"images: [{n}] build failed: {exc}")
            return EXIT_FAILURE
        rows.append(ref)
    for ref in rows:
        _log(
            f"{ref.name}\t{ref.tag or ref.directory}\t{ref.build_seconds:.0f} s\t{ref.size_bytes / 2**20:.0f} MiB"
        )
    return EXIT_OK


def _versions(d: dict[str, Any]) -> str:
    rel = d["release"]
    parts = [f"debian {rel['debian_version']}"]
    if rel.get("kernel"):
        parts.append(f"kernel {rel['kernel']}")
    parts += [f"{k} {v}" for k, v in rel.get("packages", {}).items()]
    return ", ".join(parts)


def cmd_list(args: argparse.Namespace) -> int:
    refs = list_images()
    if args.json:
        print(json.dumps([r.to_dict() for r in refs], indent=2))
        return EXIT_OK
    table = Table(title="sanlab images")
    for col in ("name", "kind", "hash", "where", "size", "build", "built at", "versions"):
        table.add_column(col, overflow="fold")
    for r in refs:
        table.add_row(
            r.name,
            r.kind.value,
            r.hash12,
            r.tag or str(r.directory),
            f"{r.size_bytes / 2**20:.0f} MiB",
            f"{r.build_seconds:.0f} s",
            r.built_at,
            _versions(r.to_dict()),
        )
    console = Console()
    if not console.is_terminal:  # logs and pipes: one plain line per image
        for r in refs:
            where = r.tag or str(r.directory)
            print(f"{r.name}\t{r.kind.value}\t{r.hash12}\t{where}\t{r.size_bytes / 2**20:.0f} MiB\t"
                  f"{r.build_seconds:.0f} s\t{r.built_at}\t{_versions(r.to_dict())}")  # fmt: skip
        return EXIT_OK
    console.print(table)
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    removed = prune(keep_latest=not args.all, log=_log)
    _log(f"images: removed {len(removed)} item(s)")
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add `images` with its verbs to a `sanlab` argparse subparsers object."""
    p = subparsers.add_parser("images", help="build, list and prune the lab's container and VM images")
    verbs = p.add_subparsers(dest="images_verb", metavar="VERB")
    verbs.required = True
    b = verbs.add_parser("build", help="build images whose recipe changed or that are missing")
    b.add_argument("names", nargs="*", metavar="NAME", help="recipes to build (default: all of images/*.yml)")
    b.add_argument("--force", action="store_true", help="rebuild even when a build with the same hash exists")
    b.set_defaults(func=cmd_build)
    ls = verbs.add_parser("list", help="list built images")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_list)
    pr = verbs.add_parser("prune", help="remove builds the current recipes no longer produce")
    pr.add_argument("--all", action="store_true", help="remove every build, current ones too")
    pr.set_defaults(func=cmd_prune)
