"""Image recipes: `images/<name>.yml`, declarative, validated, hashed.

A recipe names a Debian suite and packages; the builder (lab.images.build) turns it into a Docker image
(`kind: container`, imported as `sanlab/<name>:<hash12>`) or a VM image (`kind: vm`: kernel, initramfs and
root disk in the cache). Every error is reported with its path (`packages[2]: ...`), all at once.

The hash covers everything that changes the built image: the recipe itself, the files it copies in, the
builder's own version, and extra inputs the builder adds (the project source for `project: true`, the lab's
SSH public key for VMs). Same inputs, same hash, on any machine.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

#: bump when the build procedure changes in a way that changes images (invalidates every cached image)
BUILDER_VERSION = "1"

#: Debian suites the lab builds from, with their release numbers
SUITES: dict[str, str] = {"bullseye": "11", "bookworm": "12", "trixie": "13"}

_PKG = r"^[a-z0-9][a-z0-9+.-]+$"
_NAME = r"^[a-z0-9][a-z0-9-]{0,39}$"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "kind", "suite", "packages"],
    "properties": {
        "name": {"type": "string", "pattern": _NAME},
        "kind": {"enum": ["container", "vm"]},
        "suite": {"enum": list(SUITES)},
        "description": {"type": "string"},
        "packages": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "string", "pattern": _PKG},
        },
        "project": {"type": "boolean"},
        "cmd": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
        "hooks": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "files": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["src", "dest"],
                "properties": {
                    "src": {"type": "string", "minLength": 1},
                    "dest": {"type": "string", "pattern": "^/"},
                    "mode": {"type": "string", "pattern": "^0?[0-7]{3,4}$"},
                },
            },
        },
        "kernel": {
            "type": "object",
            "additionalProperties": False,
            "required": ["package"],
            "properties": {
                "package": {"type": "string", "pattern": _PKG},
                "prune": {"type": "array", "items": {"type": "string", "pattern": r"^[A-Za-z0-9_./-]+$"}},
            },
        },
        "versions": {"type": "array", "items": {"type": "string", "pattern": _PKG}},
    },
}


class ImageKind(enum.StrEnum):
    CONTAINER = "container"
    VM = "vm"


class RecipeError(ValueError):
    """A recipe is invalid; `errors` lists every problem as "path: message"."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: " + "; ".join(errors))


@dataclass(frozen=True)
class FileSpec:
    src: str  # relative to images/files/
    dest: str  # absolute path in the image
    mode: int = 0o644


@dataclass(frozen=True)
class KernelSpec:
    package: str  # the suite's kernel meta-package, e.g. linux-image-amd64
    prune: tuple[str, ...] = ()  # module directories (under lib/modules/<ver>/kernel/) left out of the image


@dataclass(frozen=True)
class Recipe:
    name: str
    kind: ImageKind
    suite: str
    packages: tuple[str, ...]
    description: str = ""
    project: bool = False
    cmd: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    hooks: tuple[str, ...] = ()
    files: tuple[FileSpec, ...] = ()
    kernel: KernelSpec | None = None
    versions: tuple[str, ...] = ()
    source: Path | None = None  # the recipe file

    @property
    def release(self) -> str:
        """Debian release number of the suite ("12")."""
        return SUITES[self.suite]

    def canonical(self) -> dict[str, Any]:
        """The recipe as plain data, stable key order: what the hash covers."""
        return {
            "name": self.name,
            "kind": self.kind.value,
            "suite": self.suite,
            "packages": list(self.packages),
            "project": self.project,
            "cmd": list(self.cmd),
            "env": dict(sorted(self.env.items())),
            "hooks": list(self.hooks),
            "files": [{"src": f.src, "dest": f.dest, "mode": f.mode} for f in self.files],
            "kernel": None
            if self.kernel is None
            else {"package": self.kernel.package, "prune": list(self.kernel.prune)},
        }


def images_dir() -> Path:
    """The recipes folder: $SANLAB_IMAGES_DIR, else `images/` at the top of the source tree."""
    env = os.environ.get("SANLAB_IMAGES_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "images"


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def validate(
    data: Any, *, source: str = "recipe", expected_name: str | None = None, files_dir: Path | None = None
) -> list[str]:
    """Every problem with recipe `data`, each as "path: message" (empty list when valid)."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = [
        f"{_path(e.absolute_path)}: {e.message}"
        for e in sorted(
            validator.iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.message)
        )
    ]
    if not isinstance(data, dict):
        return errors
    kind = data.get("kind")
    if kind == "vm" and "kernel" not in data:
        errors.append("kernel: required for kind vm")
    if kind == "vm":
        for key in ("cmd", "env", "project"):
            if key in data:
                errors.append(f"{key}: only for kind container")
    if kind == "container" and "kernel" in data:
        errors.append("kernel: only for kind vm")
    name = data.get("name")
    if expected_name is not None and isinstance(name, str) and name != expected_name:
        errors.append(f"name: {name!r} does not match the file name {expected_name!r}")
    if files_dir is not None and isinstance(data.get("files"), list):
        for i, f in enumerate(data["files"]):
            if isinstance(f, dict) and isinstance(f.get("src"), str):
                src = f["src"]
                if ".." in Path(src).parts or src.startswith("/"):
                    errors.append(f"files[{i}].src: {src!r} must be a relative path inside images/files")
                elif not (files_dir / src).is_file():
                    errors.append(f"files[{i}].src: {src!r} not found in {files_dir}")
    return errors


def parse(
    data: Any, *, source: str = "recipe", expected_name: str | None = None, files_dir: Path | None = None
) -> Recipe:
    """A validated Recipe from plain data, or RecipeError listing every problem."""
    errors = validate(data, source=source, expected_name=expected_name, files_dir=files_dir)
    if errors:
        raise RecipeError(source, errors)
    kernel = data.get("kernel")
    return Recipe(
        name=data["name"],
        kind=ImageKind(data["kind"]),
        suite=data["suite"],
        packages=tuple(data["packages"]),
        description=data.get("description", ""),
        project=bool(data.get("project", False)),
        cmd=tuple(data.get("cmd", ())),
        env=dict(data.get("env", {})),
        hooks=tuple(data.get("hooks", ())),
        files=tuple(
            FileSpec(src=f["src"], dest=f["dest"], mode=int(f.get("mode", "0644"), 8))
            for f in data.get("files", ())
        ),
        kernel=None if kernel is None else KernelSpec(kernel["package"], tuple(kernel.get("prune", ()))),
        versions=tuple(data.get("versions", ())),
    )


def load_recipe(path: Path) -> Recipe:
    """Load and validate one recipe file (its name must match the file name)."""
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RecipeError(source, [f"(file): {exc.strerror or exc}"]) from exc
    except yaml.YAMLError as exc:
        raise RecipeError(source, [f"(yaml): {exc}"]) from exc
    recipe = parse(data, source=source, expected_name=path.stem, files_dir=path.parent / "files")
    return Recipe(**{**recipe.__dict__, "source": path})


def recipe_names(directory: Path | None = None) -> list[str]:
    d = directory or images_dir()
    return sorted(p.stem for p in d.glob("*.yml"))


def find_recipe(name: str, directory: Path | None = None) -> Recipe:
    d = directory or images_dir()
    path = d / f"{name}.yml"
    if not path.is_file():
        known = ", ".join(recipe_names(d)) or "none"
        raise RecipeError(name, [f"(name): no recipe {path} (known: {known})"])
    return load_recipe(path)


def hash_files(paths: Iterable[Path], root: Path) -> str:
    """sha256 over (relative path, content) of `paths`, sorted: stable across machines and checkouts."""
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda q: q.relative_to(root).as_posix()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def recipe_hash(
    recipe: Recipe, *, files_dir: Path | None = None, extra: Mapping[str, str] | None = None
) -> str:
    """The cache key of `recipe`: canonical recipe + copied-in files + builder version + `extra` inputs."""
    h = hashlib.sha256()
    h.update(json.dumps({"builder": BUILDER_VERSION, "recipe": recipe.canonical()}, sort_keys=True).encode())
    fdir = files_dir if files_dir is not None else (recipe.source.parent / "files" if recipe.source else None)
    for f in recipe.files:
        data = (fdir / f.src).read_bytes() if fdir is not None else b""
        h.update(f"\0file:{f.src}\0".encode() + hashlib.sha256(data).digest())
    for key, value in sorted((extra or {}).items()):
        h.update(f"\0extra:{key}={value}".encode())
    return h.hexdigest()


def parse_dpkg_query(text: str) -> dict[str, str]:
    """`dpkg-query -W -f '${Package}\\t${Version}\\n'` output -> {package: version} (arch qualifiers dropped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split("\t")
        if len(parts) == 2 and parts[0] and parts[1]:
            out[parts[0].split(":", 1)[0]] = parts[1]
    return out
