"""The dashboard's web app (Starlette): the page, its static assets and the JSON API.

Routes (all JSON under ``/api/``; see docs/dashboard.md for the reference):

* ``GET /api/info`` — store, whether reads need the token, steering support (always open);
* ``GET /api/experiments`` — every experiment with status, progress and best, plus launches;
* ``POST /api/experiments`` — launch a run from a config (token);
* ``GET /api/experiments/{name}`` — progress summary (counts, rate, ETA, workers, best);
* ``GET .../generations | exploration | pareto | hyperparameters | controls | events``;
* ``GET .../posterior?round=k`` — an inference experiment's posterior per round (pair plot);
* ``GET .../provenance`` — one entry per session (code, packages, hosts), changes flagged;
* ``GET .../evaluations`` (filtered, sorted, paged), ``GET .../evaluations/{g}/{i}`` (detail),
  ``GET .../evaluations/{g}/{i}/reports``, ``GET .../evaluations/{g}/{i}/artifact?name=``;
* ``POST /api/experiments/{name}/control`` — a steering command (token);
  ``POST .../control/{id}/cancel`` withdraws a pending one (token).

Handlers are plain functions: Starlette runs them in its thread pool, and the store's own
lock serializes them on its one connection.  Launching does not take the readers' lock: its
validation (a child process that imports the optimizee) runs in its own worker thread while
the views go on answering.  Every malformed request gets a 4xx with a one-line JSON error
(:mod:`metaloop.dashboard.bodies`); an unexpected failure is a JSON 500 and one line on stderr.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from metaloop.dashboard import detail, posterior, steering_routes, views
from metaloop.dashboard.assets import static_dir
from metaloop.dashboard.bodies import MAX_PATH_INT, BadRequest, json_body, path_int, query_int
from metaloop.dashboard.launch import Launcher, LaunchError, check_config, parse_config
from metaloop.dashboard.reader import StoreReader
from metaloop.dashboard.security import MAX_BODY_BYTES, Guard, allowed_hosts, token_matches
from metaloop.readers.provenance import provenance as sessions
from metaloop.records import PROVENANCE_EVENT
from metaloop.scoring import stored_weights
from metaloop.store import StoreError
from metaloop.store.urls import mask_password

#: largest page of the evaluation table
MAX_PAGE = 1000

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class ApiError(Exception):
    def __init__(self, status: int, error: str, lines: list[str] | None = None):
        super().__init__(error)
        self.status, self.error, self.lines = status, error, lines


def _json(data: Any, status: int = 200) -> Response:
    body = json.dumps(views.jsonable(data), separators=(",", ":"), allow_nan=False)
    return Response(
        body,
        status_code=status,
        media_type="application/json",
        headers={**COMMON_HEADERS, "Cache-Control": "no-store"},
    )


class Dashboard:
    """The app's state: the store reader, the token, the launcher."""

    def __init__(
        self,
        storage: str,
        token: str,
        public_read: bool = False,
        launcher: Launcher | None = None,
    ):
        self.reader = StoreReader(storage)
        self.lock = threading.RLock()
        self.storage = storage
        self.token = token
        self.public_read = public_read
        self.launcher = launcher

    # -- plumbing -------------------------------------------------------------------------
    def _authorized(self, request: Request) -> bool:
        return token_matches(request.headers.get("authorization"), self.token)

    def endpoint(
        self, fn: Callable[..., Any], write: bool = False, locked: bool = True
    ) -> Callable[..., Response]:
        """Wrap a handler: token check, path parameters, errors as JSON.

        ``locked`` handlers run under the readers' lock (they share the caches); the launch
        handler does not, so a slow validation never holds up the views."""

        async def handler(request: Request) -> Response:
            if (write or not self.public_read) and not self._authorized(request):
                r = _json({"error": "unauthorized: send 'Authorization: Bearer <token>'"}, 401)
                r.headers["WWW-Authenticate"] = "Bearer"
                return r
            request.state.body = await request.body() if request.method == "POST" else b""
            return await run_in_threadpool(call, request)

        def call(request: Request) -> Response:
            try:
                params = _checked_path(request.path_params)
                if locked:  # one request at a time on the caches (the store: one lock too)
                    with self.lock:
                        data = fn(request, **params)
                else:
                    data = fn(request, **params)
                return _json(data)
            except ApiError as exc:
                body: dict[str, Any] = {"error": exc.error}
                if exc.lines is not None:
                    body["errors"] = exc.lines
                return _json(body, exc.status)
            except BadRequest as exc:
                return _json({"error": exc.error}, exc.status)
            except StoreError as exc:
                status = 404 if str(exc).startswith("name: no experiment") else 400
                return _json({"error": _one_line(str(exc))}, status)
            except Exception as exc:  # a bug: one line on stderr, a JSON 500 to the client
                return _internal(request, exc)

        return handler

    def _info(self, name: str) -> Any:
        return self.reader.experiment(name)

    def _evaluations(self, name: str) -> tuple[Any, Any]:
        info = self._info(name)
        return info, self.reader.cache(info)

    def _derived(self, cache: Any, key: str, make: Callable[[], Any]) -> Any:
        if key not in cache.derived:
            cache.derived[key] = make()
        return cache.derived[key]

    def _store(self) -> Any:
        store = self.reader.store
        if store is None:
            raise ApiError(404, f"storage: no store at {mask_password(self.storage)} yet")
        return store

    # -- handlers -------------------------------------------------------------------------
    def api_info(self, request: Request) -> Any:
        authorized = self._authorized(request)
        return {
            # where the data lives is itself data: only for those who may read it
            "storage": mask_password(self.storage) if authorized or self.public_read else None,
            "public_read": self.public_read,
            "authorized": authorized,
            "steering": steering_routes.available(),
            "launch": self.launcher is not None,
            "max_body": MAX_BODY_BYTES,
        }

    def list_experiments(self, request: Request) -> Any:
        rows = [views.experiment_row(i) for i in self.reader.experiments()]
        known = {r["name"] for r in rows}
        launches = [] if self.launcher is None else self.launcher.launches()
        return {
            "storage": mask_password(self.storage),
            "experiments": rows,
            "launches": [launch for launch in launches if launch["name"] not in known],
        }

    def launch(self, request: Request) -> Any:
        if self.launcher is None:
            raise ApiError(403, "launch: this dashboard was started without launching")
        body = _body(request)
        if "config" not in body:
            raise ApiError(400, "config: required key is missing (YAML/JSON text or a mapping)")
        try:
            raw = parse_config(body["config"])
            if body.get("name") is not None:
                raw = {**raw, "name": body["name"]}
            name = raw.get("name")
            store = self.reader.store
            if isinstance(name, str) and (
                (store is not None and store.get_experiment(name) is not None)
                or self.launcher.pending(name)
            ):
                raise LaunchError(
                    f"name: an experiment named {name!r} already exists; choose another name"
                )
            config = check_config(raw, self.storage, self.launcher.base_dir)
            launch = self.launcher.start(config)
        except LaunchError as exc:
            raise ApiError(400, "; ".join(exc.lines), exc.lines) from None
        return {"launched": launch.state()}

    def summary(self, request: Request, name: str) -> Any:
        info, cache = self._evaluations(name)
        store = self._store()
        # events change with the evaluations or the status (start, resume, generation ends)
        key = f"events:{info.status}:{info.updated if info.status != 'running' else ''}"
        events = self._derived(cache, key, lambda: store.events(info.id))
        trail = steering_routes.controls(store, info)
        current = steering_routes.hyperparameters(store, info)["current"] if trail else None
        out = views.summary(
            info, cache.by_generation, events, memo=cache.derived, hyperparameters=current
        )
        pending = sum(1 for c in trail if c.get("status") == "pending")
        out["posterior"] = posterior.has_posterior(info)
        out["controls"] = len(trail)
        out["controls_pending"] = pending
        out["version"] += f":{len(trail)}:{pending}"
        return out

    def generations(self, request: Request, name: str) -> Any:
        info, cache = self._evaluations(name)
        weights = stored_weights(info.config)
        blocks = cache.per_generation("block", lambda es: views.generation_block(es, weights))
        return self._derived(
            cache,
            "generations",
            lambda: views.generation_stats(cache.by_generation, weights, blocks),
        )

    def exploration(self, request: Request, name: str) -> Any:
        info, cache = self._evaluations(name)
        weights = stored_weights(info.config)
        return self._derived(cache, "exploration", lambda: views.exploration(cache.all(), weights))

    def pareto(self, request: Request, name: str) -> Any:
        info, cache = self._evaluations(name)
        weights = stored_weights(info.config)
        return self._derived(cache, "pareto", lambda: views.pareto(cache.all(), weights))

    def evaluations(self, request: Request, name: str) -> Any:
        info, cache = self._evaluations(name)
        weights = stored_weights(info.config)
        q = request.query_params
        sort = q.get("sort", "generation")
        if not views.valid_sort_key(sort):
            raise ApiError(400, f"sort: unknown column {sort!r}")
        order = q.get("order", "asc")
        if order not in ("asc", "desc"):
            raise ApiError(400, f"order: expected 'asc' or 'desc', got {order!r}")
        generation = _int(q, "generation", None, lo=0)
        per_gen = cache.per_generation(
            "rows", lambda es: [views.searchable_row(e, weights) for e in es]
        )
        rows = self._derived(cache, "rows", lambda: [r for rs in per_gen.values() for r in rs])
        rows = rows + self._running_rows(info, cache)
        page = views.query_rows(
            rows,
            sort=sort,
            descending=order == "desc",
            status=q.get("status") or None,
            generation=generation,
            text=q.get("q") or None,
            offset=_int(q, "offset", 0, lo=0),
            limit=_int(q, "limit", 50, lo=1, hi=MAX_PAGE),
        )
        page["columns"] = self._derived(cache, "columns", lambda: views.columns(rows, len(weights)))
        return page

    def _running_rows(self, info: Any, cache: Any) -> list[dict[str, Any]]:
        """Evaluations of the newest generations that reported values but have no result."""
        store = self._store()
        get = getattr(store, "reports", None)
        if get is None or not views.is_live(info):
            return []
        current = max(cache.by_generation, default=0)
        seen: dict[tuple[int, int], float] = {}
        for g in (current, current + 1):
            for r in get(info.id, generation=g):
                key = (r.generation, r.index)
                seen[key] = min(seen.get(key, r.time), r.time)
        return [
            views.running_row(g, i, t)
            for (g, i), t in sorted(seen.items())
            if cache.get(g, i) is None
        ]

    def evaluation(self, request: Request, name: str, generation: int, index: int) -> Any:
        info, cache = self._evaluations(name)
        e = cache.get(generation, index)
        store = self._store()
        if e is None:
            found = store.evaluations(info.id, generation)
            e = next((x for x in found if x.index == index), None)
        if e is None and not detail.reports_of(store, info.id, generation, index)["count"]:
            raise ApiError(404, f"evaluation: no generation {generation} index {index} in {name!r}")
        return detail.evaluation_detail(
            store, info, e, generation, index, stored_weights(info.config)
        )

    def reports(self, request: Request, name: str, generation: int, index: int) -> Any:
        info = self._info(name)
        return detail.reports_of(self._store(), info.id, generation, index)

    def hyperparameters(self, request: Request, name: str) -> Any:
        info = self._info(name)
        return steering_routes.hyperparameters(self._store(), info)

    def controls(self, request: Request, name: str) -> Any:
        info = self._info(name)
        return {"controls": steering_routes.controls(self._store(), info)}

    def events(self, request: Request, name: str) -> Any:
        info = self._info(name)
        return {"events": detail.capped_events(self._store().events(info.id)[-500:])}

    def provenance(self, request: Request, name: str) -> Any:
        info, cache = self._evaluations(name)
        events = self._store().events(info.id, kinds=(PROVENANCE_EVENT,))
        key = f"provenance:{len(events)}"  # a new session, or new evaluations: again
        return {"provenance": self._derived(cache, key, lambda: sessions(events, cache.all()))}

    def posterior(self, request: Request, name: str) -> Any:
        info = self._info(name)
        wanted = _int(request.query_params, "round", None, lo=0, hi=MAX_PATH_INT)
        events = self._store().events(info.id, kinds=posterior.EVENT_KINDS)
        try:
            return posterior.posterior_view(info, events, wanted)
        except posterior.PosteriorError as exc:
            raise ApiError(exc.status, exc.error) from None

    def control(self, request: Request, name: str) -> Any:
        body = _body(request)
        if not steering_routes.available():
            raise ApiError(501, "control: this metaloop has no steering support")
        from metaloop.steering import ControlError

        self._info(name)  # 404 for an unknown experiment
        client = request.client.host if request.client else "unknown"
        try:
            with self._writable_store() as writable:
                row = steering_routes.submit(writable, name, body, origin=f"web:{client}")
        except ControlError as exc:
            raise ApiError(400, str(exc)) from None
        return {"control": row}

    def _writable_store(self) -> Any:
        """The reads use a read-only store; a command is written through a store of its own
        (404 while there is no store)."""
        from metaloop.store import open_store

        self._store()
        return open_store(self.storage, create=False)

    def cancel(self, request: Request, name: str, cid: str) -> Any:
        from metaloop.steering import ControlError

        self._info(name)  # 404 for an unknown experiment
        client = request.client.host if request.client else "unknown"
        try:
            with self._writable_store() as writable:
                row = steering_routes.cancel(writable, name, cid, origin=f"web:{client}")
        except ControlError as exc:
            raise ApiError(steering_routes.cancel_status(str(exc)), str(exc)) from None
        return {"control": row}

    def artifact(self, request: Request) -> Response:
        """One artifact file, from its stored path only; images inline, others as downloads.

        The response is sandboxed (CSP) so an HTML or SVG artifact cannot run script in the
        dashboard's origin, where the token lives.
        """
        if not self.public_read and not self._authorized(request):
            return _json({"error": "unauthorized: send 'Authorization: Bearer <token>'"}, 401)
        try:
            p = _checked_path(request.path_params)
        except BadRequest as exc:
            return _json({"error": exc.error}, exc.status)
        generation, index = p["generation"], p["index"]
        wanted = request.query_params.get("name", "")
        try:
            info = self._info(p["name"])
            store = self._store()
        except (StoreError, ApiError) as exc:
            return _json({"error": _one_line(str(exc))}, 404)
        found = detail.artifact_path(store, info.id, generation, index, wanted)
        if found is None:
            return _json(
                {"error": f"artifact: ({generation}, {index}) has no artifact named {wanted!r}"},
                404,
            )
        record = found[1]
        path = detail.artifact_file(*found)
        if path is None:
            return _json(
                {
                    "error": f"artifact: {record.name!r} is gone or is not a file inside its "
                    "evaluation's artifact folder (links out of it are not served)"
                },
                404,
            )
        media = record.media_type or "application/octet-stream"
        inline = media in detail.INLINE_IMAGES
        return FileResponse(
            path,
            media_type=media if inline else "application/octet-stream",
            filename=Path(record.name).name or "artifact",
            content_disposition_type="inline" if inline else "attachment",
            headers={
                **COMMON_HEADERS,
                "Content-Security-Policy": "sandbox; default-src 'none'",
                "Cache-Control": "no-store",
            },
        )

    def index(self, request: Request) -> Response:
        return FileResponse(
            static_dir() / "index.html",
            media_type="text/html",
            headers={**COMMON_HEADERS, "Content-Security-Policy": PAGE_CSP},
        )

    # -- the app --------------------------------------------------------------------------
    def routes(self) -> list[Any]:
        e = self.endpoint
        # names may hold any character, '/' included (decoded before routing): the name is a
        # path segment group, so the routes with a suffix come before the bare one
        exp = "/api/experiments/{name:path}"
        one = exp + "/evaluations/{generation:int}/{index:int}"
        return [
            Route("/", self.index),
            Route("/favicon.ico", lambda request: Response(status_code=204)),
            Route("/api/info", self._open(self.api_info)),
            Route("/api/experiments", e(self.list_experiments), methods=["GET"]),
            Route(
                "/api/experiments", e(self.launch, write=True, locked=False), methods=["POST"]
            ),
            Route(one + "/reports", e(self.reports)),
            Route(one + "/artifact", self.artifact),
            Route(one, e(self.evaluation)),
            Route(exp + "/generations", e(self.generations)),
            Route(exp + "/exploration", e(self.exploration)),
            Route(exp + "/pareto", e(self.pareto)),
            Route(exp + "/evaluations", e(self.evaluations)),
            Route(exp + "/hyperparameters", e(self.hyperparameters)),
            Route(exp + "/controls", e(self.controls)),
            Route(exp + "/events", e(self.events)),
            Route(exp + "/posterior", e(self.posterior)),
            Route(exp + "/provenance", e(self.provenance)),
            Route(exp + "/control", e(self.control, write=True), methods=["POST"]),
            Route(exp + "/control/{cid}/cancel", e(self.cancel, write=True), methods=["POST"]),
            Route(exp, e(self.summary)),
            Mount("/static", StaticFiles(directory=static_dir()), name="static"),
        ]

    def _open(self, fn: Callable[..., Any]) -> Callable[..., Response]:
        def handler(request: Request) -> Response:
            return _json(fn(request))

        return handler

    def close(self) -> None:
        if self.launcher is not None:
            self.launcher.close()
        self.reader.close()


def _body(request: Request) -> dict[str, Any]:
    """The request's JSON object body (4xx with the reason otherwise)."""
    return json_body(request.state.body, request.headers.get("content-type"))


_int = query_int


def _checked_path(params: dict[str, Any]) -> dict[str, Any]:
    """Path parameters with generation and index range-checked (400 otherwise)."""
    out = dict(params)
    for key in ("generation", "index"):
        if key in out:
            out[key] = path_int(key, out[key])
    return out


def _one_line(text: str, limit: int = 500) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[:limit] + "..."


def _internal(request: Request, exc: BaseException) -> Response:
    what = f"{type(exc).__name__}: {_one_line(str(exc), 300)}"
    print(
        f"metaloop dashboard: {request.method} {request.url.path}: internal error: {what}",
        file=sys.stderr,
        flush=True,
    )
    return _json({"error": f"internal: {what}"}, 500)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no such route) and 405 (wrong method) as JSON errors."""
    status = getattr(exc, "status_code", 500)
    if status == 404:
        message = f"not found: no route for {request.url.path[:200]!r}"
    elif status == 405:
        message = f"method: {request.method} is not allowed here"
    else:
        message = _one_line(str(getattr(exc, "detail", "")) or "error")
    return _json({"error": message}, status)


def make_app(
    storage: str,
    token: str,
    public_read: bool = False,
    launcher: Launcher | None = None,
    bind_host: str = "127.0.0.1",
    max_body: int = MAX_BODY_BYTES,
) -> Any:
    """The ASGI app of a dashboard on ``storage`` (``app.state.dashboard`` holds its state)."""
    dash = Dashboard(storage, token, public_read, launcher)
    app = Starlette(routes=dash.routes(), exception_handlers={HTTPException: _http_error})
    app.state.dashboard = dash
    guarded = Guard(app, max_body, allowed_hosts(bind_host))
    guarded.dashboard = dash  # type: ignore[attr-defined]
    return guarded
