"""The dashboard: a static page that polls JSON endpoints any script can use too.

    GET /dashboard                 the page (static/: HTML, JS, CSS, hand-drawn SVG; no CDN). It holds
                                   no numbers: it asks for an API key (kept in the tab's
                                   sessionStorage, or given as /dashboard#key=...) and reads:
    GET /v1/stats?window=5m|1h|24h|all   the aggregates (stats_view.py) and each target's breaker
    GET /v1/reports                the latest eval report and bench results found in the report folders
    GET /v1/reports/{folder}/{file}      one of those files (.md, .json, .png)

With API keys, the JSON endpoints need a key that may read (role full or read; a `call` key may not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from llmrouter.config import Config
from llmrouter.server.auth import may_read
from llmrouter.server.stats_recorder import Recorder, first_target, top_route
from llmrouter.server.stats_store import StatsStore
from llmrouter.server.stats_view import BadWindow, empty_counts, snapshot
from llmrouter.server.wire import HTTPError

STATIC = Path(__file__).parent / "static"
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
# the page loads nothing from another origin, and runs no inline script
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
               "connect-src 'self'; frame-ancestors 'none'")
REPORT_TYPES = {".md": "text/markdown; charset=utf-8", ".json": "application/json", ".png": "image/png"}
BENCH_SHOWN = 8


@dataclass
class Dashboard:
    """The store, its recorder, the tables it prices, and where reports are found."""

    store: StatsStore
    recorder: Recorder
    configs: dict[str, Config]
    report_dirs: list[Path] = field(default_factory=list)
    breakers: Callable[[], dict[str, str]] = dict

    def stats(self, window: str) -> dict[str, Any]:
        data = snapshot(self.store, window)
        states = self.breakers()
        seen = {t["target"] for t in data["targets"]}
        for t in data["targets"]:
            t["breaker"] = states.get(t["target"], "")
        data["targets"] += [{"target": n, **empty_counts(), "breaker": s} for n, s in sorted(states.items())
                            if n not in seen]
        data["tables"] = {name: _pricing(c) for name, c in self.configs.items()}
        return data

    def reports(self) -> dict[str, Any]:
        """The latest eval report (a folder with report.md) and the newest bench results."""
        evals: list[dict[str, Any]] = []
        bench: list[dict[str, Any]] = []
        for i, d in enumerate(self.report_dirs):
            if (d / "report.md").is_file():
                plots = sorted(p.name for p in d.glob("*.png"))
                evals.append({"folder": i, "name": "report.md", "plots": plots, "mtime": _mtime(d / "report.md")})
            elif d.is_dir():
                for md in d.glob("*.md"):
                    png = md.with_suffix(".png")
                    bench.append({"folder": i, "name": md.name, "plots": [png.name] if png.is_file() else [],
                                  "mtime": _mtime(md)})
        evals.sort(key=lambda r: (-float(r["mtime"]), r["name"]))
        bench.sort(key=lambda r: (-float(r["mtime"]), r["name"]))
        return {"eval": evals[0] if evals else None, "bench": bench[:BENCH_SHOWN],
                "folders": [str(d) for d in self.report_dirs]}

    def report_file(self, folder: str, name: str) -> Path:
        """A file of a report folder: only a plain name with a report suffix, inside that folder."""
        if not (folder.isascii() and folder.isdigit()) or int(folder) >= len(self.report_dirs):
            raise HTTPError(404, f"no report folder {folder[:20]!r}", code="not_found")
        base = self.report_dirs[int(folder)]
        path = base / name
        if "/" in name or "\\" in name or name.startswith(".") or path.suffix not in REPORT_TYPES \
                or not path.is_file() or path.resolve().parent != base.resolve():
            raise HTTPError(404, f"no report file {name[:80]!r}", code="not_found")
        return path

    def close(self) -> None:
        self.store.close()


def _pricing(config: Config) -> dict[str, Any]:
    top = top_route(config)
    t = first_target(config, top)
    baseline = config.dashboard.baseline_route
    b = first_target(config, baseline) if baseline else None
    return {"top_route": top, "top_target": t.name if t else None, "baseline_route": baseline or None,
            "baseline_target": b.name if b else None}


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


# --- the handlers: the AppState (app.py) carries `dashboard` and `caller` -----------------------
def _host(request: HTTPRequest) -> Any:
    return request.app.state.llmrouter


def _reader(request: HTTPRequest) -> Dashboard:
    """The dashboard, once the caller's key may read (full or read role); raises 401 or 403."""
    host = _host(request)
    if not may_read(host.caller(request)):
        raise HTTPError(403, "this key may only call completions (role call): it may not read the server's "
                        "numbers", kind="permission_error", code="not_allowed")
    dash: Dashboard = host.dashboard
    return dash


async def page(request: HTTPRequest) -> Response:
    return FileResponse(STATIC / "dashboard.html", media_type="text/html; charset=utf-8",
                        headers={"cache-control": "no-cache", "content-security-policy": PAGE_POLICY})


async def asset(request: HTTPRequest) -> Response:
    name = request.path_params["name"]
    if name not in ASSETS:
        return HTTPError(404, f"no dashboard file {name[:80]!r}", code="not_found").response()
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers={"cache-control": "no-cache"})


async def stats(request: HTTPRequest) -> Response:
    try:
        dash = _reader(request)
        window = request.query_params.get("window", "1h")
        return JSONResponse(await run_in_threadpool(dash.stats, window))
    except BadWindow as exc:
        return HTTPError(400, str(exc), code="invalid_window").response()
    except HTTPError as err:
        return err.response()


async def reports(request: HTTPRequest) -> Response:
    try:
        return JSONResponse(await run_in_threadpool(_reader(request).reports))
    except HTTPError as err:
        return err.response()


async def report_file(request: HTTPRequest) -> Response:
    try:
        path = _reader(request).report_file(request.path_params["folder"], request.path_params["name"])
    except HTTPError as err:
        return err.response()
    return FileResponse(path, media_type=REPORT_TYPES[path.suffix])


ROUTES = [
    Route("/dashboard", page, methods=["GET"]),
    Route("/dashboard/{name:path}", asset, methods=["GET"]),  # :path: a slash gets a 404, not a redirect
    Route("/v1/stats", stats, methods=["GET"]),
    Route("/v1/reports", reports, methods=["GET"]),
    Route("/v1/reports/{folder}/{name:path}", report_file, methods=["GET"]),
]
