"""The web API and the explorer page: a FastAPI application around an :class:`Explorer`.

``GET /`` is the explorer; ``GET /api/models``, ``GET /api/models/{name}/layers``,
``GET /api/models/{name}/classes``, ``GET /api/samples``, ``POST /api/explain`` (multipart) and the
result downloads under ``/api/results/`` are the API, described by ``/openapi.json`` and shown at
``/docs`` (a page of this server's own: FastAPI's default pulls its scripts from a CDN). Every
refusal is JSON, ``{"detail": "why"}``: 400 (a form beyond the parser's limits, or a ``Host``
this server does not answer to), 403 (a ``POST`` from another site's page), 404 (no such model,
sample or result), 405, 413 (too large), 415 (not an image), 422 (a value this server does not
take) or 503 (the model's queue is full, or it cannot be loaded); an error inside a request is a
500 of the same shape, and the server goes on."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ..methods import METHODS
from ..report import MEDIA_TYPES, SAVE_OPTIONS
from .explorer import ExplainRequest, Explorer, RequestError
from .settings import ServeSettings

__all__ = ["create_app"]

_log = logging.getLogger("camlens.serve")
_TEMPLATES = Path(__file__).parent / "templates"


def _megabytes(count: int) -> str:
    return f"{count / 2 ** 20:g} MB"


def create_app(settings: ServeSettings) -> FastAPI:
    """The application serving ``settings``' models; run it with any ASGI server
    (``camlens serve`` uses uvicorn)."""
    import jinja2

    explorer = Explorer(settings)
    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        explorer.close()  # a stopped server does not work through its queues first

    app = FastAPI(title="camlens explorer", version=_version(),
                  description="Class activation maps of the models this server offers, for uploaded or sample photos.",
                  docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.explorer = explorer
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    app.add_middleware(SameOrigin)
    if "*" not in settings.allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=[*settings.allowed_hosts, "[::1]"])

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"detail": error.message}, status_code=error.status,
                            headers={"Retry-After": "1"} if error.status == 503 else None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        detail = error.detail
        if error.status_code == 413:
            detail = _too_large(settings.max_upload_bytes)
        return JSONResponse({"detail": detail}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in error.errors())
        return JSONResponse({"detail": f"the request is not what this endpoint takes ({problems})",
                             "errors": [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in error.errors()]},
                            status_code=422)

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> JSONResponse:
        _log.error("camlens serve: %s %s failed", request.method, request.url.path, exc_info=error)
        return JSONResponse({"detail": f"the server could not do this ({type(error).__name__}; its log says more)"},
                            status_code=500)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        methods = [{"name": m.name, "title": m.title, "kind": m.kind} for m in METHODS.values()]
        return templates.get_template("explorer.html").render(
            methods=methods, models=explorer.models(), samples=list(explorer.samples),
            limit=_megabytes(settings.max_upload_bytes))

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def documentation() -> str:
        return templates.get_template("api.html").render(api=app.openapi())

    @app.get("/api/models", summary="The models this server offers")
    def models() -> list[dict]:
        """Each model's ``name`` (what ``POST /api/explain`` takes), ``task``, ``description``, and
        whether it is ``loaded`` yet (a model loads on its first use)."""
        return explorer.models()

    # {name:path}: hub names hold a slash (hf:google/vit-base-patch16-224)
    @app.get("/api/models/{name:path}/layers", summary="A model's candidate layers, with their output shapes")
    def layers(name: str) -> dict:
        """The layers a CAM can be made at (spatial maps, or tokens on the patch grid), in the
        order the model produces them, and ``recommended``: what ``layer=auto`` means."""
        found, recommended = explorer.slot(name, 404).layers()
        return {"model": name, "recommended": recommended,
                "layers": [{"name": layer.name, "kind": layer.kind, "shape": list(layer.shape or ()),
                            "described": layer.described} for layer in found]}

    @app.get("/api/models/{name:path}/classes", summary="Search a model's classes by name")
    def classes(name: str, q: Annotated[str, Query(max_length=200)] = "",
                limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> list[dict]:
        """The classes whose name holds ``q`` (names that start with it first), or whose index it is."""
        return explorer.classes(name, q, limit)

    @app.get("/api/methods", summary="The CAM methods")
    def methods() -> list[dict]:
        return [{"name": m.name, "title": m.title, "kind": m.kind, "paper": m.paper} for m in METHODS.values()]

    @app.get("/api/samples", summary="The sample photos this server offers")
    def samples() -> list[dict]:
        return [{"name": name, "url": f"/api/samples/{name}"} for name in explorer.samples]

    @app.get("/api/samples/{name}", summary="A sample photo", response_class=Response)
    def sample(name: str) -> Response:
        image = explorer.sample(name, status=404)
        buffer = io.BytesIO()
        image.thumbnail((settings.display_side, settings.display_side))
        image.save(buffer, format="JPEG", quality=90)
        return Response(buffer.getvalue(), media_type="image/jpeg")

    @app.post("/api/explain", summary="Explain a photo")
    async def explain(
        file: Annotated[UploadFile | None, File(description="the photo (JPEG, PNG, WebP, BMP, GIF or TIFF), found "
                                                            "by decoding it, not by its name")] = None,
        sample: Annotated[str | None, Form(description="or a sample's name (GET /api/samples)")] = None,
        model: Annotated[str | None, Form(description="a name from GET /api/models (default: the first)")] = None,
        layer: Annotated[str, Form(description="a layer from GET /api/models/{name}/layers, or auto")] = "auto",
        methods: Annotated[str, Form(description="comma-separated method names (GET /api/methods)")] = "gradcam",
        target: Annotated[str, Form(description="top1 … topK, or class names or indices, comma-separated")] = "top1",
    ) -> dict:
        """One photo, one model, the methods and the classes asked for: the model's top-5, and
        per class its score, its maps at the layer's resolution, and the addresses of its
        pictures (``…/rows/R/METHOD.png?alpha=A``: the map over the photo at opacity A) and files
        (``maps.pt`` as ``camlens explain`` writes it, the JSON)."""
        upload, name = None, "upload"
        if file is not None:
            upload = await file.read()  # within the body limit
            name = Path(file.filename or "upload").name or "upload"  # a label for pictures, never a path
        request = ExplainRequest(model=model or next(iter(explorer.slots)), layer=layer,
                                 methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
                                 target=tuple(t.strip() for t in target.split(",") if t.strip()) or ("top1",))
        result = await asyncio.wrap_future(explorer.submit(request, upload, name, sample))
        return result.document()

    @app.get("/api/results/{key}.json", summary="An explanation's JSON, as a download")
    def result_json(key: str) -> JSONResponse:
        return JSONResponse(explorer.results.get(key).document(),
                            headers={"Content-Disposition": f'attachment; filename="camlens-{key}.json"'})

    @app.get("/api/results/{key}/maps.pt", summary="An explanation's maps.pt", response_class=Response)
    def result_maps(key: str) -> Response:
        return Response(explorer.results.get(key).maps_file(), media_type="application/octet-stream",
                        headers={"Content-Disposition": 'attachment; filename="maps.pt"'})

    @app.get("/api/results/{key}/photo.jpg", summary="The photo as explained", response_class=Response)
    def result_photo(key: str) -> Response:
        return Response(explorer.results.get(key).display_jpeg, media_type="image/jpeg")

    @app.get("/api/results/{key}/rows/{row}/{method}.{kind}", summary="A map over the photo",
             response_class=Response)
    def result_picture(key: str, row: int, method: str, kind: str,
                       alpha: Annotated[float, Query(ge=0, le=1)] = 0.5) -> Response:
        """The map of row ``row`` by ``method`` over the photo at opacity ``alpha`` (``png`` or
        ``jpg``); ``alpha=1`` gives the colours alone where the map lies, for the page to lay
        over the photo."""
        if kind not in SAVE_OPTIONS:
            raise RequestError(404, f"pictures are .png or .jpg, not .{kind}")
        result = explorer.results.get(key)
        buffer = io.BytesIO()
        result.picture(row, method, alpha).save(buffer, **SAVE_OPTIONS[kind])
        label = "".join(ch if ch.isalnum() else "_" for ch in result.rows[row]["name"])
        return Response(buffer.getvalue(), media_type=MEDIA_TYPES[kind],
                        headers={"Content-Disposition": f'inline; filename="{method}_{label}.{kind}"'})

    return app


class BodyLimit:
    """Refuses a request body over ``limit`` bytes with 413: at once where its ``Content-Length``
    says so, else as soon as the bytes read pass the limit (a chunked upload), so that no body
    is read whole before it is refused."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            response = JSONResponse({"detail": _too_large(self.limit)}, status_code=413,
                                    headers={"Connection": "close"})
            return await response(scope, receive, send)
        read = 0

        async def counted():
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > self.limit:
                raise HTTPException(413)  # inside the endpoint's body parsing: answered by the handler below
            return message

        await self.app(scope, counted, send)


class SameOrigin:
    """Refuses (403) a ``POST`` whose ``Origin`` is another site than the one it is sent to: a web
    page elsewhere cannot make the browser of the person running the explorer use it. Requests
    without an ``Origin`` (curl, scripts) are not browsers' cross-site requests and pass."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = dict(scope["headers"])
            origin, host = headers.get(b"origin"), headers.get(b"host", b"")
            if origin is not None and urlsplit(origin.decode("latin-1")).netloc.encode("latin-1") != host:
                response = JSONResponse({"detail": "a request from another site's page is refused"}, status_code=403)
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


def _too_large(limit: int) -> str:
    return f"the request is larger than this server's limit of {_megabytes(limit)}"


def _version() -> str:
    from .. import __version__

    return __version__
