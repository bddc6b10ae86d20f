"""The web demo: a page to upload a dermatoscopic image (+ optional metadata) and a JSON API.

    GET  /              the page (static/index.html, the model's vocabulary filled in)
    POST /predict       multipart form: `image` (file) and optional metadata fields, `saliency`,
                        `explain`; JSON: probabilities, top class, explanation, overlay PNG;
                        for a DICOM upload also `image_png`, the windowed picture as a PNG
                        (browsers cannot show DICOM: the page previews it), and metadata
                        fields not given are taken from its header (age, sex, view)
    GET  /model         classes, metadata vocabulary, explanation method, disclaimer
    GET  /model-card    the model folder's MODEL_CARD.md (text/markdown; export.py writes
                        one), linked from the page; 404 when the folder has none
    GET  /health        {"status": "ok"}
    GET  /openapi.json  the OpenAPI description (FastAPI); /docs renders it

The model is loaded once (`create_app(predictor)`); requests run on the server's thread
pool and each network runs one call at a time. Bad input is answered with a 4xx and
`{"error": "..."}`: bodies over the upload limit (413, before they are parsed), files that
are no image (415), truncated or corrupt images (400), decompression bombs and images over
the pixel limit (413), images over the aspect-ratio limit, unknown metadata fields or values
(`nan` included), fields given twice and missing fields (422); these are documented in the
OpenAPI description. A bug is a 500 with a JSON body too. Uploads are read in memory; no
name or value from a request is used as a path.
"""

from __future__ import annotations

import base64
import inspect
import io
import json
import os

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from multimodal.errors import UserError
from multimodal.serving.fields import MetadataInputError
from multimodal.data.images.dicom import is_dicom
from multimodal.serving.images import (DEFAULT_MAX_ASPECT, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS,
                                       header_metadata, load_image, mib)
from multimodal.serving.model_card import CARD
from multimodal.serving.overlay import overlay_png
from multimodal.serving.predictor import DISCLAIMER, Predictor

PAGE = os.path.join(os.path.dirname(__file__), "static", "index.html")
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the metadata fields, beside the image
DRAIN_LIMIT = 64 * 2**20  # a body over the limit is read (and dropped) up to this, then 413


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is answered 413 before the app
    sees it (by Content-Length, or by counting a chunked body as it arrives)."""

    def __init__(self, app, limit: int, shown: int | None = None):
        self.app, self.limit, self.shown = app, limit, shown or limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            if declared.isdigit() and int(declared) <= DRAIN_LIMIT:
                return await self._reject(receive, send)
            return await _too_large(send, self.shown)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.limit:
                return await self._reject(receive, send, more, size)
            chunks.append(chunk)
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _reject(self, receive, send, more: bool = True, seen: int = 0):
        """413 after reading and discarding the rest of the body (up to DRAIN_LIMIT), so
        a client still sending sees the answer instead of a reset connection."""
        while more and seen <= DRAIN_LIMIT:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            seen += len(message.get("body", b""))
            more = message.get("more_body", False)
        await _too_large(send, self.shown)


async def _too_large(send, limit: int):
    payload = json.dumps({"error": f"the request is larger than the upload limit of "
                                   f"{mib(limit)}. send a smaller image (re-encode it as JPEG "
                                   "or resize it)"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})


class ErrorBody(BaseModel):
    """Every error answer: one line saying what is wrong and what to do."""
    error: str


ERRORS = {status: {"model": ErrorBody, "description": what} for status, what in [
    (400, "an empty, truncated or corrupt image"),
    (413, "a request over the upload limit, or an image over the pixel limit"),
    (415, "a file that is no image Pillow can read, or a DICOM file of a kind not read "
          "(multi-frame, compressed with no decoder installed)"),
    (422, "a missing image, a field given twice, an unknown field, a metadata value the "
          "model does not accept, an image over the aspect-ratio limit")]}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _repeated(form) -> list[str]:
    """Fields sent more than once: which one would be used is no choice to make silently."""
    return sorted(k for k in set(form.keys()) if len(form.getlist(k)) > 1)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query")]
        field = ".".join(loc) or "request"
        if err.get("type") == "missing":
            hint = " (upload an image file)" if field == "image" else ""
            parts.append(f"missing field {field!r}{hint}")
        else:
            parts.append(f"{field}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _png_data_url(picture, side: int = 512) -> str:
    """A preview of `picture` (at most `side` px a side) as a PNG data URL."""
    picture = picture.copy()
    picture.thumbnail((side, side))
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def public_model(predictor: Predictor) -> dict:
    """`describe()` without server paths."""
    info = predictor.describe()
    info["source"] = {k: v for k, v in info["source"].items() if k != "path"}
    return info


def read_card(predictor: Predictor) -> str | None:
    """The model folder's card (read once at start: no request names a file), or None."""
    try:
        with open(os.path.join(predictor.path, CARD), encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def page_html(predictor: Predictor, max_upload_bytes: int) -> str:
    with open(PAGE, encoding="utf-8") as f:
        page = f.read()
    info = {**public_model(predictor), "max_upload_bytes": max_upload_bytes,
            "model_card": "model-card" if read_card(predictor) is not None else None}
    data = json.dumps(info).replace("<", "\\u003c").replace(">", "\\u003e")
    return page.replace("/*MODEL*/null", data)


def create_app(predictor: Predictor, max_upload_bytes: int = DEFAULT_MAX_BYTES,
               max_pixels: int = DEFAULT_MAX_PIXELS, saliency_steps: int = 16,
               max_aspect: float = DEFAULT_MAX_ASPECT) -> FastAPI:
    app = FastAPI(title="multimodal: dermatoscopic image classifier (research demo)",
                  description=f"{DISCLAIMER}\n\nClasses: {', '.join(predictor.classes)}.",
                  version="1")
    page = page_html(predictor, max_upload_bytes)
    card = read_card(predictor)
    vocab = predictor.vocabulary

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return _error(422, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):  # logged by the server as well
        return _error(500, f"internal error ({type(exc).__name__}); this is a bug, not your "
                           "input: the server log has the details")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index():
        return HTMLResponse(page)

    @app.get("/health", summary="Liveness check")
    def health():
        return {"status": "ok"}

    @app.get("/model", summary="Classes, metadata vocabulary and explanation method")
    def model():
        return public_model(predictor)

    @app.get("/model-card", summary="The model card (Markdown): what the model is, its "
             "training data, evaluations and failure modes", response_class=Response,
             responses={200: {"content": {"text/markdown": {}}},
                        404: {"model": ErrorBody, "description": "the model has no card"}})
    def model_card():
        if card is None:
            return _error(404, f"this model folder has no {CARD}; export the model with "
                               "scripts/export.py, which writes one")
        return Response(card, media_type="text/markdown")

    known = {"image", "saliency", "explain", *vocab}

    async def predict(request: Request, **kwargs):
        form = await request.form()  # already parsed for the parameters: cached
        twice = _repeated(form)
        if twice:
            return _error(422, f"field(s) {twice} given more than once; send each field once "
                               "(one image per request)")
        unknown = sorted(set(form.keys()) - known)
        if unknown:
            return _error(422, f"unknown field(s) {unknown}; this model's metadata fields: "
                               f"{list(vocab) or 'none (it reads no metadata)'}")
        return await run_in_threadpool(answer, **kwargs)

    def answer(**kwargs):
        upload: UploadFile | None = kwargs.pop("image")
        saliency, explain = kwargs.pop("saliency"), kwargs.pop("explain")
        given = {name: kwargs[f"field_{i}"] for i, name in enumerate(vocab)
                 if kwargs.get(f"field_{i}") not in (None, "")}
        try:
            metadata = predictor.check_metadata(given)
            picture, preview = None, None
            if predictor.uses_image:
                data = upload.file.read(max_upload_bytes + 1)
                picture = load_image(data, "image", max_upload_bytes, max_pixels, max_aspect)
                if is_dicom(data):  # the header fills fields not given; the page's preview
                    metadata = predictor.check_metadata({**header_metadata(data, vocab),
                                                         **given})
                    preview = _png_data_url(picture)
            [result] = predictor.predict([picture], [metadata], explain=explain,
                                         saliency=saliency and predictor.uses_image,
                                         saliency_steps=saliency_steps)
        except MetadataInputError as exc:
            return _error(422, exc.one_line())
        except UserError as exc:
            return _error(getattr(exc, "status", 400), exc.one_line())
        out = {**result.to_dict(), "disclaimer": DISCLAIMER}
        if preview is not None:
            out["image_png"] = preview
        if result.saliency is not None:
            png = overlay_png(*result.saliency)
            out["saliency_png"] = "data:image/png;base64," + base64.b64encode(png).decode()
        return out

    params = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                annotation=Request),
              inspect.Parameter("image", inspect.Parameter.KEYWORD_ONLY, annotation=UploadFile,
                                default=File(... if predictor.uses_image else None,
                                             description="a dermatoscopic image (JPEG, PNG, "
                                             "TIFF, BMP or WebP) or an X-ray (DICOM, "
                                             "single frame)"))]
    for i, (name, spec) in enumerate(vocab.items()):
        extra = {"enum": spec["categories"]} if spec["kind"] == "categorical" else {}
        what = (f"one of {spec['categories']}" if spec["kind"] == "categorical" else
                "a number" + (f" from {spec['range'][0]:g} to {spec['range'][1]:g}"
                              if spec.get("range") else ""))
        params.append(inspect.Parameter(
            f"field_{i}", inspect.Parameter.KEYWORD_ONLY, annotation=str | None,
            default=Form(None, alias=name, description=f"{name}: {what}; omit or leave "
                         "blank when unknown (masked as in training)",
                         json_schema_extra=extra)))
    params += [
        inspect.Parameter("saliency", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=Form(True, description="return an integrated-gradient "
                                       "overlay PNG (data URL)")),
        inspect.Parameter("explain", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=Form(True, description="return the image / metadata "
                                       "contributions")),
    ]
    predict.__signature__ = inspect.Signature(params)
    app.post("/predict", summary="Classify one image (+ optional metadata)",
             description=DISCLAIMER, responses=ERRORS)(predict)
    app.add_middleware(BodyLimit, limit=max_upload_bytes + FORM_OVERHEAD, shown=max_upload_bytes)
    _closed_form(app)
    return app


def _closed_form(app: FastAPI) -> None:
    """/predict refuses fields it does not know: its OpenAPI form says so
    (`additionalProperties: false`), so clients and fuzzers read the truth."""
    generate = app.openapi

    def openapi() -> dict:
        spec = generate()  # cached by FastAPI after the first call
        body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
        ref = body["multipart/form-data"]["schema"]["$ref"]
        spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]["additionalProperties"] = False
        return spec

    app.openapi = openapi


def warm_up(predictor: Predictor, saliency_steps: int = 16) -> None:
    """Compile the model for one-image requests (with and without saliency) before serving."""
    from PIL import Image

    picture = Image.new("RGB", (64, 48), (180, 120, 110)) if predictor.uses_image else None
    row = predictor.check_metadata({})
    predictor.predict([picture], [row], explain=True, saliency=predictor.uses_image,
                      saliency_steps=saliency_steps)
