"""The HTTP application: Judge0's routes here, ours in native.py, one set of guards for both.

Guards, as plain ASGI middleware so they run before any body is parsed: the
request body's size (413 past max_body_size, counted as it arrives, not
taken from Content-Length on trust) and the token (X-Auth-Token as header or
query parameter, as Judge0 accepts it; 401 without it).  Every error is JSON
naming what was wrong; a bug of ours is a 500 with one line, never a traceback.

Handlers are async and touch SQLite directly: each statement is short, and a
wait=true request waits on a future the worker completes, not on a thread.
"""
import asyncio
import hmac
import json
import os
import platform
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from . import judge0, native
from .pgstore import Unavailable
from .apierror import ApiError, error
from .workers import now

VERSION = "1.13.1"      # the Judge0 API we copy; the SDK picks its language-id table by it
MAX_PER_PAGE = 1000
OPEN_PATHS = ("/", "/docs", "/openapi.json", "/api/v1/health", "/docs/oauth2-redirect")


class Guards:
    """Body size and authentication, before the application sees the request."""

    def __init__(self, app, state):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        settings = self.state.settings
        if settings.auth_token and scope["path"] not in OPEN_PATHS and not self._authenticated(scope):
            return await _send_json(send, 401, {"error": "authentication failed: send the server's token in the "
                                                         "X-Auth-Token header (or ?X-Auth-Token=)"})
        limit = settings.service["max_body_size"]
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await _send_json(send, 413, _too_large(limit))
        # The whole body is read here, counting, before the application sees it: a chunked body
        # has no length to refuse by, and FastAPI would turn an error raised mid-read into a 400.
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return                       # the client went away
            seen += len(message.get("body", b""))
            if seen > limit:
                return await _send_json(send, 413, _too_large(limit))
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _authenticated(self, scope):
        token = self.state.settings.auth_token
        headers = dict(scope["headers"])
        given = [headers.get(b"x-auth-token", b""), headers.get(b"x-auth-user", b"")]
        auth = headers.get(b"authorization", b"")
        if auth.startswith(b"Bearer "):
            given.append(auth[7:])
        from urllib.parse import parse_qs
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given += [v.encode() for v in query.get("X-Auth-Token", []) + query.get("X-Auth-User", [])]
        return any(g and hmac.compare_digest(g, token.encode()) for g in given)


def _too_large(limit):
    return {"error": f"request body larger than {limit} bytes (max_body_size)",
            "fix": "send less, or raise max_body_size in the server's --config file"}


async def _send_json(send, status, body):
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


async def read_json(request):
    body = await request.body()
    try:
        return json.loads(body) if body else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(400, f"the request body is not valid JSON: {e}", fix="send a JSON object, "
                    "with Content-Type: application/json") from None


def _flag(request, name):
    return request.query_params.get(name) == "true"


def create(state):
    app = FastAPI(title="sandbox serve", version=VERSION,
                  description="A Judge0 v1.13.1-compatible API (the routes without a prefix) and this project's "
                              "own /api/v1, judged by rootless sandboxes.")

    @app.exception_handler(ApiError)
    async def api_error(request, e):
        return JSONResponse(e.body, status_code=e.status, headers=e.headers)

    @app.exception_handler(Unavailable)
    async def unavailable(request, e):
        """PostgreSQL is unreachable for a while: nothing is lost, the client tries again.  (Which
        host and why is the operator's business: the log has it, the client gets no address.)"""
        import sys
        print(f"sandbox serve: {request.method} {request.url.path}: {e}", file=sys.stderr, flush=True)
        return JSONResponse({"error": "service unavailable: the database is unreachable",
                             "fix": "retry after Retry-After seconds"},
                            status_code=503, headers={"Retry-After": str(state.storage.RETRY_AFTER)})

    @app.exception_handler(Exception)
    async def bug(request, e):
        import sys
        print(f"sandbox serve: internal error on {request.method} {request.url.path}: {type(e).__name__}: {e}",
              file=sys.stderr, flush=True)
        return JSONResponse({"error": f"internal error: {type(e).__name__}: {e}"}, status_code=500)

    routes_judge0(app, state)
    native.routes(app, state)
    app.add_middleware(Guards, state=state)
    return app


def routes_judge0(app, state):
    cfg = state.settings.judge0
    langs = state.languages

    def fields_of(request):
        try:
            return judge0.wanted_fields(request.query_params.get("fields"))
        except judge0.BadFields as e:
            raise error(400, str(e), fix=f"fields are: {', '.join(judge0.ALL_FIELDS)}, or *") from None

    def render(row, request, fields=None, encoded=None):
        try:
            return judge0.render(row, fields or fields_of(request),
                                 _flag(request, "base64_encoded") if encoded is None else encoded, langs)
        except judge0.NotUtf8 as e:
            raise error(400, f"some attributes for this submission cannot be converted to UTF-8 ({e}), use "
                             "base64_encoded=true") from None

    def check_queue(n):
        if cfg["maintenance_mode"]:
            raise error(503, "maintenance mode is on")
        pending = state.pool.pending()
        if pending + n > cfg["max_queue_size"]:
            retry = str(max(1, pending // max(1, state.settings.workers)))
            raise ApiError(503, {"error": "queue is full", "max_queue_size": cfg["max_queue_size"]},
                           {"Retry-After": retry})

    def parse(body, encoded):
        return judge0.parse(body, encoded, cfg, langs, state.scratch, state.settings.allow_callback)

    @app.get("/", include_in_schema=False)
    async def home():
        return Response(status_code=200)

    @app.post("/submissions", status_code=201, tags=["Judge0"])
    async def create_submission(request: Request):
        encoded, wait = _flag(request, "base64_encoded"), _flag(request, "wait")
        if wait and not cfg["enable_wait_result"]:
            raise error(400, "wait not allowed")
        fields = fields_of(request) if wait else None
        try:
            req = parse(await read_json(request), encoded)
        except judge0.Invalid as e:
            raise ApiError(422, e.errors) from None
        check_queue(1)
        token = str(uuid.uuid4())
        state.storage.add([(token, "judge0", req, now())])
        if not wait:
            state.pool.submit([token])
            return JSONResponse({"token": token}, status_code=201)
        await state.wait_for([token])
        return JSONResponse(render(state.storage.get(token), request, fields), status_code=201)

    @app.get("/submissions/batch", tags=["Judge0"])
    async def get_batch(request: Request):
        raw = request.query_params.get("tokens") or request.headers.get("tokens") or ""
        tokens = [t.strip() for t in raw.split(",") if t.strip()]
        if not tokens:
            raise error(400, "no tokens given", fix="GET /submissions/batch?tokens=T1,T2,...")
        if len(tokens) > cfg["max_submission_batch_size"]:
            raise error(400, f"more than {cfg['max_submission_batch_size']} tokens (max_submission_batch_size)")
        rows = state.storage.get_many(tokens)
        return {"submissions": [render(r, request) if r and r["kind"] == "judge0" else None for r in rows]}

    @app.post("/submissions/batch", status_code=201, tags=["Judge0"])
    async def create_batch(request: Request):
        if not cfg["enable_batched_submissions"]:
            raise error(400, "batched submissions are not allowed (enable_batched_submissions is false)")
        body = await read_json(request)
        items = body.get("submissions") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise ApiError(422, {"submissions": ["must be a non-empty list of submissions"]})
        if len(items) > cfg["max_submission_batch_size"]:
            raise ApiError(422, {"submissions": [f"size of the batch must be less than or equal to "
                                                 f"{cfg['max_submission_batch_size']} (max_submission_batch_size)"]})
        encoded, answers, rows = _flag(request, "base64_encoded"), [], []
        for item in items:
            try:
                req = parse(item, encoded)
            except judge0.Invalid as e:
                answers.append(e.errors)
                continue
            token = str(uuid.uuid4())
            rows.append((token, "judge0", req, now()))
            answers.append({"token": token})
        if not rows:
            return JSONResponse(answers, status_code=422)
        check_queue(len(rows))
        state.storage.add(rows)
        state.pool.submit([r[0] for r in rows])
        return JSONResponse(answers, status_code=201)

    @app.get("/submissions/{token}", tags=["Judge0"])
    async def get_submission(token: str, request: Request):
        row = state.storage.get(token)
        if row is None or row["kind"] != "judge0":
            raise error(404, f"no submission with token {token}")
        return render(row, request)

    @app.get("/submissions", tags=["Judge0"])
    async def list_submissions(request: Request):
        page = _positive(request, "page", 1)
        per_page = _positive(request, "per_page", 20)
        if per_page > MAX_PER_PAGE:     # one request must not render the whole database
            raise error(400, f"per_page must be at most {MAX_PER_PAGE}, not {per_page}", fix="page through them")
        rows, total = state.storage.page("judge0", (page - 1) * per_page, per_page)
        pages = (total + per_page - 1) // per_page
        return {"submissions": [render(r, request) for r in rows],
                "meta": {"current_page": page, "next_page": page + 1 if page < pages else None,
                         "prev_page": page - 1 if page > 1 else None, "total_pages": pages, "total_count": total}}

    @app.delete("/submissions/{token}", tags=["Judge0"])
    async def delete_submission(token: str, request: Request):
        if not cfg["enable_submission_delete"]:
            raise error(400, "delete not allowed (enable_submission_delete is false)")
        row = state.storage.get(token)
        if row is None or row["kind"] != "judge0":
            raise error(404, f"no submission with token {token}")
        if row["state"] != "done":
            raise error(400, f"submission {token} is still {'queued' if row['state'] == 'queued' else 'running'}; "
                             "it can be deleted once it has a final status")
        body = render(row, request, encoded=True)      # Judge0 answers a DELETE in base64 always
        state.storage.delete(token)
        return body

    @app.get("/languages", tags=["Judge0"])
    async def languages():
        return [{"id": lang.id, "name": lang.name} for lang in langs.values() if not lang.unavailable]

    @app.get("/languages/all", tags=["Judge0"])
    async def languages_all():
        return [dict({"id": lang.id, "name": lang.name, "is_archived": bool(lang.unavailable)},
                     **({"unavailable": lang.unavailable} if lang.unavailable else {})) for lang in langs.values()]

    @app.get("/languages/{language_id}", tags=["Judge0"])
    async def language(language_id: str):
        lang = langs.get(int(language_id)) if language_id.isdigit() else None
        if lang is None:
            raise error(404, f"language with id {language_id} doesn't exist", fix="GET /languages lists them")
        return {"id": lang.id, "name": lang.name, "is_archived": bool(lang.unavailable), "source_file": lang.source,
                "compile_cmd": lang.compile_cmd, "run_cmd": lang.run_cmd()}

    @app.get("/statuses", tags=["Judge0"])
    async def statuses():
        return [{"id": i, "description": d} for i, d in judge0.STATUSES.items()]

    @app.get("/about", tags=["Judge0"])
    async def about():
        from ..version import __version__
        return {"version": VERSION, "homepage": "sandbox serve (Judge0 v1.13.1 API)",
                "source_code": f"sandbox {__version__}", "maintainer": "the sandbox project"}

    @app.get("/version", tags=["Judge0"], response_class=PlainTextResponse)
    async def version():
        return VERSION

    @app.get("/isolate", tags=["Judge0"], response_class=PlainTextResponse)
    async def isolate():
        from ..version import __version__
        return f"sandbox {__version__}: rootless namespaces, seccomp, cgroup v2 when delegated (not isolate)"

    @app.get("/license", tags=["Judge0"], response_class=PlainTextResponse)
    async def license_():
        return "MIT"

    @app.get("/config_info", tags=["Judge0"])
    async def config_info():
        return cfg

    @app.get("/system_info", tags=["Judge0"])
    async def system_info():
        import psutil
        mem, swap = psutil.virtual_memory(), psutil.swap_memory()
        return {"Architecture": platform.machine(), "CPU(s)": str(psutil.cpu_count() or 0),
                "Thread(s) per core": str((psutil.cpu_count() or 1) // max(1, psutil.cpu_count(logical=False) or 1)),
                "Model name": _cpu_model(), "Mem": _gib(mem.total), "Mem available": _gib(mem.available),
                "Swap": _gib(swap.total), "Load average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                "Kernel": platform.release()}

    @app.get("/workers", tags=["Judge0"])
    async def workers():
        return state.pool.queue_rows()

    @app.post("/authenticate", tags=["Judge0"])
    async def authenticate():
        return Response(status_code=200)       # the guard already answered 401 to a wrong token

    @app.post("/authorize", tags=["Judge0"])
    async def authorize():
        return Response(status_code=200)


def _positive(request, name, default):
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise error(400, f"{name} must be a positive integer, not {raw!r}")
    return int(raw)


def _gib(n):
    return f"{n / 2**30:.1f}G"


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class State:
    """What the routes share: settings, storage, languages, the worker pool."""

    def __init__(self, settings, storage, languages, pool, scratch):
        self.settings, self.storage, self.languages, self.pool, self.scratch = \
            settings, storage, languages, pool, scratch

    async def wait_for(self, tokens):
        """Until the workers have finished every one of tokens (wait=true)."""
        loop = asyncio.get_running_loop()
        left = set(tokens)
        done = loop.create_future()

        def finished(token):
            def mark():
                left.discard(token)
                if not left and not done.done():
                    done.set_result(None)
            loop.call_soon_threadsafe(mark)

        self.pool.submit(tokens, on_done=finished)
        await done

    async def call(self, fn):
        """fn() in a worker thread (the pool bounds how many sandboxes run at once)."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def finished(value):
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(value))

        self.pool.call(fn, finished)
        value = await done
        if isinstance(value, Exception):
            raise value
        return value
