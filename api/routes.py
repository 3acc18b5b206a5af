"""The endpoints of ``isic serve``: score a patient's lesions, report an outcome, the model and
its operating points, liveness and readiness (OpenAPI page at ``/docs``).

Every refusal is a 4xx whose ``detail`` names the field (FastAPI's 422 for a malformed body;
ours for a crop that is not an image, too many lesions or pixels, a body over the limit, a wrong
token, an outcome for a lesion never scored). A request is answered only after its rows are
committed to the prediction log; a log that cannot take them answers 503 (not acknowledged).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import secrets
import uuid
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from isicstack.api.batcher import Batcher, Job
from isicstack.api.config import ServeConfig
from isicstack.api.schemas import LesionAnswer, Outcome, OutcomeAnswer, ScoreAnswer, ScoreRequest
from isicstack.serving.inputs import (
    InputError,
    decode_crop,
    lesion_frame,
    unseen_levels,
)
from isicstack.serving.predlog import UnknownLesion
from isicstack.serving.reference import crop_stats
from isicstack.serving.scorer import NOTICE, Scorer


class BodyLimit:
    """ASGI middleware: a body over ``max_bytes`` is a 413, by its Content-Length before any
    byte is read, or by counting when it is streamed without one (raised as an HTTPException,
    which FastAPI's body parsing passes on as it is)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def refusal(self) -> str:
        return f"body: more than the {self.max_bytes:,} bytes allowed"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            return await JSONResponse({"detail": self.refusal()}, 413)(scope, receive, send)
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, self.refusal())
            return message

        await self.app(scope, counted, send)


def _crop(lesion: Any, i: int, max_pixels: int, keep_pixels: bool
          ) -> tuple[Any, dict[str, Any]]:
    """The decoded crop and what the log keeps of it (its bytes only with ``keep_pixels``)."""
    try:
        data = base64.b64decode(lesion.crop, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"lesions[{i}].crop: not base64 (send the JPEG or PNG file, "
                         "base64-encoded)") from None
    img = decode_crop(data, f"lesions[{i}].crop", max_pixels)
    return img, {"crop_sha256": hashlib.sha256(data).hexdigest(), "crop_bytes": len(data),
                 "crop_stats": crop_stats(img), **({"crop": data} if keep_pixels else {})}


def prepare(req: ScoreRequest, scorer: Scorer, cfg: ServeConfig, request_id: str) -> Job:
    """The request as a job: rows, decoded crops, what the log keeps, warnings (InputError)."""
    if len(req.lesions) > cfg.max_lesions:
        raise InputError(f"lesions: {len(req.lesions)} in one request, more than the "
                         f"{cfg.max_lesions} allowed")
    lesions = [les.model_dump(exclude={"crop"}, exclude_none=True) for les in req.lesions]
    rows = lesion_frame(req.patient_id, lesions)
    crops, logged = {}, []
    known = scorer.known_levels()
    for i, les in enumerate(req.lesions):
        img, kept = _crop(les, i, cfg.max_pixels, cfg.store_pixels)
        crops[les.isic_id] = img
        meta = {k: v for k, v in lesions[i].items() if k != "isic_id"}
        logged.append({**kept, "inputs": meta, "warn": unseen_levels(meta, known)})
    return Job(request_id, rows, crops, logged)


def create_app(scorer: Scorer, store: Any, cfg: ServeConfig, token: str = "") -> FastAPI:
    """The API over a loaded ``scorer`` and an open prediction log ``store``."""
    app = FastAPI(title="isicstack scoring API", version=scorer.version,
                  description=f"ISIC 2024 lesion risk, {NOTICE}.")
    app.add_middleware(BodyLimit, max_bytes=int(cfg.max_body_mb * 1e6))
    batcher = Batcher(scorer, store, cfg.batch_lesions, cfg.batch_wait_ms / 1000)
    app.state.batcher = batcher

    def authorised(request: Request) -> None:
        if not token:
            return
        got = request.headers.get("authorization", "")
        if not secrets.compare_digest(got.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "authorization: missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    guard = [Depends(authorised)]

    @app.exception_handler(InputError)
    async def bad_input(_: Request, err: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, 422)

    @app.exception_handler(RequestValidationError)
    async def malformed(_: Request, err: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each bad value: a NaN or inf then fails to encode
        # (a 500), and a mistyped crop comes back whole; the field and the reason suffice
        return JSONResponse({"detail": [{k: e[k] for k in ("loc", "msg", "type") if k in e}
                                        for e in err.errors()]}, 422)

    @app.post("/v1/score", response_model=ScoreAnswer, dependencies=guard,
              summary="score one patient's lesions")
    async def score(req: ScoreRequest) -> dict[str, Any]:
        request_id = uuid.uuid4().hex
        job = await run_in_threadpool(prepare, req, scorer, cfg, request_id)
        fut = batcher.submit(job)
        try:
            scored = await asyncio.wait_for(asyncio.wrap_future(fut), cfg.timeout_s)
        except TimeoutError:
            fut.cancel()
            raise HTTPException(503, f"not scored within timeout_s={cfg.timeout_s:g} s; "
                                "retry later") from None
        except Exception as err:  # the log refused the rows, or scoring failed
            raise HTTPException(503, f"not scored: {type(err).__name__}: {err}") from None
        lesions = [LesionAnswer(isic_id=s.isic_id, risk=s.risk, score=s.score, flag=s.flag,
                                scorer=s.scorer, model=s.model, model_version=s.version,
                                request_id=request_id, warnings=s.warnings + kept["warn"])
                   for s, kept in zip(scored, job.logged, strict=True)]
        return {"request_id": request_id, "model_version": scorer.version, "notice": NOTICE,
                "lesions": lesions}

    @app.post("/v1/outcomes", response_model=OutcomeAnswer, dependencies=guard,
              summary="the biopsy (or audit) result of a scored lesion")
    async def outcome(out: Outcome) -> dict[str, Any]:
        try:
            n = await run_in_threadpool(store.add_outcome, out.isic_id, int(out.malignant),
                                        out.reason)
        except UnknownLesion:
            raise HTTPException(404, f"isic_id: {out.isic_id!r} was never scored") from None
        except Exception as err:
            raise HTTPException(503, f"outcome not recorded: {err}") from None
        # the log returns the outcome's row id, not a count: one row was written
        return {"isic_id": out.isic_id, "recorded": 1, "outcome_id": n}

    @app.get("/v1/model", dependencies=guard, summary="the model's version and operating points")
    async def model() -> dict[str, Any]:
        man = scorer.manifest
        return {"version": scorer.version, "notice": NOTICE,
                **{k: man.get(k) for k in ("created", "content_hash", "fold_hash", "stacker")},
                "scorers": man["scorers"],
                "limits": {k: getattr(cfg, k) for k in (
                    "max_body_mb", "max_lesions", "max_pixels", "timeout_s")}}

    @app.get("/healthz", summary="liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", summary="readiness: the model is loaded and the scorer thread runs")
    async def readyz() -> JSONResponse:
        ok = batcher.alive
        return JSONResponse({"status": "ready" if ok else "not ready",
                             "model_version": scorer.version}, 200 if ok else 503)

    app.router.on_shutdown.append(batcher.stop)
    return app
