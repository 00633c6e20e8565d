"""The management API over HTTP (aiohttp): JSON on a local Unix socket (owner-only), optionally on TCP with a
bearer token, and Prometheus text at GET /metrics (also on an optional plain metrics TCP port).

    GET  /v1/tree?path=P[&secrets=1]        the object tree at P            (sanlab target show)
    GET  /v1/sessions                       live sessions
    POST /v1/create  {path, properties}     create an object                (sanlab target create)
    POST /v1/set     {path, properties}     change properties / groups      (sanlab target set)
    POST /v1/delete  {path}                 delete an object and what depends on it
    POST /v1/apply   {config, partial, dry_run}   bring the target to a config document's state
    GET  /v1/config?format=native|lio       the running configuration        (saveconfig to stdout)
    POST /v1/saveconfig {path, format}      save it on the target's side
    POST /v1/reload                         re-read the startup file (what SIGHUP does)
    GET  /v1/stats                          counters as JSON                 (sanlab target stats)
    GET  /metrics                           Prometheus text exposition
    GET  /v1/alua[?storage_object=SO]       ALUA target port groups per LU     (sanlab target alua show)
    POST /v1/alua/set {storage_object, group, state}   implicit transition, recorded in the config
    GET  /v1/pr?storage_object=SO           persistent reservations of one LU  (sanlab target pr show)
    POST /v1/pr/clear {storage_object}      drop registrations and reservation (sanlab target pr clear)

Every change answers with the ApplyReport (changes, applied, failed[{path, reason}], elapsed_ms); a refused
apply is HTTP 409, a bad request 400, an unknown path 404.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from target.api.manager import ApplyReport, ManagementError, Manager, StateDirError
from target.config.errors import ConfigError
from target.config.lio import export_saveconfig
from target.config.load import load_document
from target.config.native import dump_config
from target.metrics.collect import make_registry, prometheus_text, snapshot

log = logging.getLogger("target.api")

MAX_REQUEST_BYTES = 64 * 1024 * 1024
SOCKET_ENV = "SANLAB_SOCKET"
TOKEN_ENV = "SANLAB_TOKEN"
SYSTEM_SOCKET = "/run/sanlab/target.sock"

_MANAGER: web.AppKey[Manager] = web.AppKey("manager", Manager)
_TOKEN: web.AppKey[str] = web.AppKey("token", str)


def socket_candidates() -> list[str]:
    """Where a target puts its management socket, in order of preference."""
    out = [SYSTEM_SOCKET]
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        out.append(str(Path(xdg) / "sanlab" / "target.sock"))
    out.append(f"/tmp/sanlab-{os.getuid()}/target.sock")
    return out


def default_socket_path() -> str:
    """The socket a new target should create: the first candidate whose directory can be made and written."""
    for cand in socket_candidates():
        d = Path(cand).parent
        try:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError:
            continue
        if os.access(d, os.W_OK | os.X_OK):
            return cand
    return socket_candidates()[-1]


def find_socket() -> str:
    """The socket a client should use: $SANLAB_SOCKET, else the first candidate that exists."""
    env = os.environ.get(SOCKET_ENV)
    if env:
        return env
    for cand in socket_candidates():
        if Path(cand).exists():
            return cand
    return default_socket_path()


def _socket_alive(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(0.5)
        s.connect(path)
    except OSError:
        return False
    finally:
        s.close()
    return True


def _report_response(report: ApplyReport) -> web.Response:
    status = 200 if report.applied else 409
    return web.json_response(report.as_dict(), status=status)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ManagementError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise ManagementError("the request body must be a JSON object")
    return body


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    token = request.app.get(_TOKEN, "")
    if token and request.path != "/metrics":
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
    try:
        return await handler(request)
    except ManagementError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    except ConfigError as exc:
        return web.json_response({"error": "invalid configuration", "errors": exc.errors}, status=400)
    except StateDirError as exc:
        return web.json_response({"error": str(exc)}, status=500)


async def tree(request: web.Request) -> web.Response:
    m = request.app[_MANAGER]
    secrets = request.query.get("secrets") in ("1", "true", "yes")
    return web.json_response(m.show(request.query.get("path", "/"), secrets=secrets))


async def sessions(request: web.Request) -> web.Response:
    return web.json_response({"sessions": request.app[_MANAGER].sessions()})


async def create(request: web.Request) -> web.Response:
    body = await _json_body(request)
    m = request.app[_MANAGER]
    return _report_response(await m.create(str(body.get("path", "")), dict(body.get("properties") or {})))


async def set_props(request: web.Request) -> web.Response:
    body = await _json_body(request)
    m = request.app[_MANAGER]
    props = body.get("properties")
    if not isinstance(props, dict) or not props:
        raise ManagementError("set needs properties")
    return _report_response(await m.set(str(body.get("path", "")), props))


async def delete(request: web.Request) -> web.Response:
    body = await _json_body(request)
    return _report_response(await request.app[_MANAGER].delete(str(body.get("path", ""))))


async def apply(request: web.Request) -> web.Response:
    body = await _json_body(request)
    desired, warnings = load_document(body.get("config"))
    report = await request.app[_MANAGER].apply(
        desired, partial=bool(body.get("partial")), dry_run=bool(body.get("dry_run"))
    )
    resp = report.as_dict()
    resp["warnings"] = warnings
    return web.json_response(resp, status=200 if report.applied else 409)


async def config(request: web.Request) -> web.Response:
    cfg = request.app[_MANAGER].config
    doc = export_saveconfig(cfg) if request.query.get("format") == "lio" else dump_config(cfg)
    return web.json_response(doc)


async def saveconfig(request: web.Request) -> web.Response:
    body = await _json_body(request)
    path = request.app[_MANAGER].saveconfig(body.get("path") or None, fmt=str(body.get("format", "native")))
    return web.json_response({"saved": path})


async def reload(request: web.Request) -> web.Response:
    return _report_response(await request.app[_MANAGER].reload())


async def stats(request: web.Request) -> web.Response:
    m = request.app[_MANAGER]
    return web.json_response(snapshot(m.rt, m.server))


async def alua_show(request: web.Request) -> web.Response:
    so = request.query.get("storage_object") or None
    return web.json_response({"storage_objects": request.app[_MANAGER].alua_show(so)})


def _required(body: dict[str, Any], *names: str) -> list[str]:
    out = []
    for name in names:
        value = body.get(name)
        if value is None or str(value) == "":
            raise ManagementError(f"{name} is required")
        out.append(str(value))
    return out


async def alua_set(request: web.Request) -> web.Response:
    so, group, state = _required(await _json_body(request), "storage_object", "group", "state")
    return web.json_response(await request.app[_MANAGER].alua_set(so, group, state))


async def pr_show(request: web.Request) -> web.Response:
    so = request.query.get("storage_object", "")
    if not so:
        raise ManagementError("storage_object is required")
    return web.json_response(request.app[_MANAGER].pr_show(so))


async def pr_clear(request: web.Request) -> web.Response:
    (so,) = _required(await _json_body(request), "storage_object")
    return web.json_response(await request.app[_MANAGER].pr_clear(so))


def _metrics_handler(m: Manager) -> Any:
    registry = make_registry(m.rt, m.server)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=prometheus_text(registry), content_type="text/plain", charset="utf-8")

    return metrics


def make_app(manager: Manager, *, token: str = "") -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=MAX_REQUEST_BYTES)
    app[_MANAGER] = manager
    app[_TOKEN] = token
    app.router.add_get("/v1/tree", tree)
    app.router.add_get("/v1/sessions", sessions)
    app.router.add_post("/v1/create", create)
    app.router.add_post("/v1/set", set_props)
    app.router.add_post("/v1/delete", delete)
    app.router.add_post("/v1/apply", apply)
    app.router.add_get("/v1/config", config)
    app.router.add_post("/v1/saveconfig", saveconfig)
    app.router.add_post("/v1/reload", reload)
    app.router.add_get("/v1/stats", stats)
    app.router.add_get("/v1/alua", alua_show)
    app.router.add_post("/v1/alua/set", alua_set)
    app.router.add_get("/v1/pr", pr_show)
    app.router.add_post("/v1/pr/clear", pr_clear)
    app.router.add_get("/metrics", _metrics_handler(manager))
    return app


@dataclass
class ApiServer:
    runners: list[web.AppRunner] = field(default_factory=list)
    socket_path: str = ""
    tcp_port: int = 0
    metrics_port: int = 0

    async def close(self) -> None:
        for r in self.runners:
            await r.cleanup()
        if self.socket_path:
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)


async def start_api(
    manager: Manager,
    *,
    socket_path: str | None = None,
    tcp: tuple[str, int] | None = None,
    token: str = "",
    metrics: tuple[str, int] | None = None,
) -> ApiServer:
    """Serve the API on a Unix socket (0600), optionally on TCP (a token is then required) and /metrics alone
    on a plain TCP port."""
    out = ApiServer()
    if socket_path:
        Path(socket_path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if Path(socket_path).exists():
            if _socket_alive(socket_path):
                # another running target owns it: keep serving iSCSI, say how to reach this one differently
                log.error(
                    "another target serves the management socket %s; start with --socket PATH", socket_path
                )
                socket_path = None
            else:
                Path(socket_path).unlink()  # a stale socket of a previous run
    if socket_path:
        runner = web.AppRunner(make_app(manager), access_log=None)
        await runner.setup()
        site = web.UnixSite(runner, socket_path)
        await site.start()
        os.chmod(socket_path, 0o600)
        out.runners.append(runner)
        out.socket_path = socket_path
        log.info("management API on unix:%s", socket_path)
    if tcp is not None:
        if not token:
            raise ManagementError("a TCP management listener needs a token")
        runner = web.AppRunner(make_app(manager, token=token), access_log=None)
        await runner.setup()
        tsite = web.TCPSite(runner, tcp[0], tcp[1])
        await tsite.start()
        out.runners.append(runner)
        out.tcp_port = runner.addresses[0][1] if runner.addresses else tcp[1]
        log.info("management API on tcp %s:%d (bearer token)", tcp[0], out.tcp_port)
    if metrics is not None:
        app = web.Application()
        app.router.add_get("/metrics", _metrics_handler(manager))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        msite = web.TCPSite(runner, metrics[0], metrics[1])
        await msite.start()
        out.runners.append(runner)
        out.metrics_port = runner.addresses[0][1] if runner.addresses else metrics[1]
        log.info("Prometheus metrics on http://%s:%d/metrics", metrics[0], out.metrics_port)
    return out
