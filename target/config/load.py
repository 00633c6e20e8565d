"""Reading a configuration file: JSON (or YAML) -> format detection -> Config plus warnings.

Two formats are accepted, told apart by their keys:
- native: has ``sanlab_config_version`` (see `target.config.native` and schema.json);
- LIO: ``storage_objects`` / ``targets`` / ``fabric_modules`` as targetcli's saveconfig.json writes them
  (see `target.config.lio`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml

from target.config import lio, native
from target.config.atomic import write_atomic
from target.config.errors import ConfigError
from target.config.model import Config

Format = Literal["native", "lio"]

#: a configuration file bigger than this is a mistake (the config of 10 000 LUNs is a few MB)
MAX_CONFIG_BYTES = 64 * 1024 * 1024
_LIO_KEYS = ("storage_objects", "targets", "fabric_modules")


def detect_format(doc: object) -> Format:
    if isinstance(doc, dict):
        if native.VERSION_KEY in doc:
            return "native"
        if any(k in doc for k in _LIO_KEYS):
            return "lio"
    raise ConfigError(
        [
            "(top level): unknown configuration format: expected a JSON object with "
            f"'{native.VERSION_KEY}' (sanlab) or 'storage_objects'/'targets' (LIO saveconfig.json)"
        ]
    )


def load_document(doc: object) -> tuple[Config, list[str]]:
    """An already-parsed document of either format -> (Config, warnings)."""
    if detect_format(doc) == "native":
        return native.parse_config_with_warnings(doc)
    return lio.import_saveconfig(doc)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_text(text: str, *, yaml_syntax: bool = False) -> object:
    """JSON (duplicate keys are an error: the second would silently win) or YAML text -> document."""
    if yaml_syntax:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError([f"(file): not valid YAML: {e}"]) from None
        except RecursionError:
            raise ConfigError(["(file): nested too deeply"]) from None
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicates)
    except RecursionError:
        raise ConfigError(["(file): nested too deeply"]) from None
    except json.JSONDecodeError as e:
        raise ConfigError([f"(file): not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"]) from None
    except ValueError as e:
        raise ConfigError([f"(file): not valid JSON: {e}"]) from None


def load_config(path: str | os.PathLike[str]) -> tuple[Config, list[str]]:
    """Read `path` (native sanlab JSON or LIO saveconfig.json; YAML for .yml/.yaml) -> (Config, warnings).

    Raises ConfigError listing every error, each with its JSON path; `source` names the file.
    """
    cfg, warnings, _ = load_config_with_format(path)
    return cfg, warnings


def load_config_with_format(path: str | os.PathLike[str]) -> tuple[Config, list[str], Format]:
    """load_config, also saying which format the file was in."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError([f"(file): larger than {MAX_CONFIG_BYTES} bytes"], source=str(p))
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"(file): cannot read: {e.strerror or e}"], source=str(p)) from None
    except UnicodeDecodeError:
        raise ConfigError(["(file): not UTF-8 text"], source=str(p)) from None
    try:
        doc = parse_text(text, yaml_syntax=p.suffix.lower() in (".yml", ".yaml"))
        fmt = detect_format(doc)
        cfg, warnings = load_document(doc)
        return cfg, warnings, fmt
    except ConfigError as e:
        raise ConfigError(e.errors, source=str(p)) from None


def save_config(cfg: Config, path: str | os.PathLike[str], *, fmt: Format = "native") -> None:
    """Write `cfg` atomically (temp file, fsync, rename) in the native format or as a LIO saveconfig.json."""
    doc = native.dump_config(cfg) if fmt == "native" else lio.export_saveconfig(cfg)
    write_atomic(path, (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode("utf-8"))
