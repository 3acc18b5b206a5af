"""The bad requests the scoring API must refuse (tests/test_api.py runs each; README's
bad-request table is rendered from them): each a request maker over a valid one-lesion
request, the status, and the field the refusal's message must name.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image


def _png(w: int, h: int) -> bytes:
    """A PNG that declares a w x h canvas (with almost no pixel data behind it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def _image(fmt: str, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size).save(buf, fmt)
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _lesion(**change: Any) -> Callable[[dict], dict]:
    """A request whose first lesion has ``change`` (None: the field removed)."""
    def make(req: dict) -> dict:
        les = {k: v for k, v in req["lesions"][0].items() if change.get(k, 0) is not None}
        les.update({k: v for k, v in change.items() if v is not None})
        return {"json": {**req, "lesions": [les]}}
    return make


def _truncated(req: dict) -> dict:
    data = base64.b64decode(req["lesions"][0]["crop"])
    return _lesion(crop=_b64(data[: len(data) // 2]))(req)


def _raw(text_of: Callable[[dict], str]) -> Callable[[dict], dict]:
    def make(req: dict) -> dict:
        return {"content": text_of(req), "headers": {"Content-Type": "application/json"}}
    return make


def _nonfinite(token: str) -> Callable[[dict], dict]:
    def text(req: dict) -> str:
        les = {**req["lesions"][0], "age_approx": "@@"}
        return json.dumps({**req, "lesions": [les]}).replace('"@@"', token)
    return _raw(text)


def _huge(req: dict) -> dict:
    return _lesion(crop="A" * 1_100_000)(req)


def _chunked(req: dict) -> dict:
    body = json.dumps(_huge(req)["json"]).encode()
    return {"content": (body[i:i + 65536] for i in range(0, len(body), 65536)),
            "headers": {"Content-Type": "application/json"}}


def _many(req: dict) -> dict:
    les = req["lesions"][0]
    return {"json": {**req, "lesions": [{**les, "isic_id": f"L{i}"} for i in range(11)]}}


def _repeated(req: dict) -> dict:
    les = req["lesions"][0]
    return {"json": {**req, "lesions": [les, dict(les)]}}


def _top(**change: Any) -> Callable[[dict], dict]:
    def make(req: dict) -> dict:
        out = {k: v for k, v in req.items() if change.get(k, 0) is not None}
        return {"json": {**out, **{k: v for k, v in change.items() if v is not None}}}
    return make


def _outcome(body: dict) -> Callable[[dict], dict]:
    return lambda req: {"json": body, "path": "/v1/outcomes"}


# (case, request maker, status, the field the message names); README's table lists the same
BAD: list[tuple[str, Callable[[dict], dict], int, str]] = [
    ("missing patient_id", _top(patient_id=None), 422, "patient_id"),
    ("patient_id not a string", _top(patient_id=12), 422, "patient_id"),
    ("empty patient_id", _top(patient_id=""), 422, "patient_id"),
    ("missing lesions", _top(lesions=None), 422, "lesions"),
    ("empty lesions list", _top(lesions=[]), 422, "lesions"),
    ("unknown top-level field", _top(doctor="x"), 422, "doctor"),
    ("lesion without isic_id", _lesion(isic_id=None), 422, "isic_id"),
    ("lesion without crop", _lesion(crop=None), 422, "crop"),
    ("unknown metadata column", _lesion(favourite_colour="blue"), 422, "favourite_colour"),
    ("train-only column (target)", _lesion(target=1), 422, "target"),
    ("number as text", _lesion(age_approx="fifty"), 422, "age_approx"),
    ("NaN number", _nonfinite("NaN"), 422, "age_approx"),
    ("infinite number", _nonfinite("Infinity"), 422, "age_approx"),
    ("category not a string", _lesion(sex=1), 422, "sex"),
    ("crop not base64", _lesion(crop="not base64!"), 422, "crop"),
    ("crop not an image", _lesion(crop=_b64(b"hello, not an image")), 422, "crop"),
    ("crop a GIF", _lesion(crop=_b64(_image("GIF", (8, 8)))), 422, "crop"),
    ("truncated JPEG", _truncated, 422, "crop"),
    ("crop over max_pixels", _lesion(crop=_b64(_image("PNG", (1100, 1000)))), 422, "crop"),
    ("decompression bomb (PNG declares 50000 x 50000)", _lesion(crop=_b64(_png(50000, 50000))),
     422, "crop"),
    ("too many lesions", _many, 422, "lesions"),
    ("repeated isic_id", _repeated, 422, "isic_id"),
    ("not JSON", _raw(lambda req: "{patient_id: 1"), 422, "body"),
    ("body over max_body_mb (Content-Length)", _huge, 413, "body"),
    ("body over max_body_mb (chunked)", _chunked, 413, "body"),
    ("outcome for an unknown lesion", _outcome({"isic_id": "ISIC_x", "malignant": True}),
     404, "isic_id"),
    ("outcome malignant not a boolean", _outcome({"isic_id": "ISIC_x", "malignant": "maybe"}),
     422, "malignant"),
    ("outcome reason not biopsy/audit",
     _outcome({"isic_id": "ISIC_x", "malignant": True, "reason": "guess"}), 422, "reason"),
]


# refusals tested above with their own app (the token)
OTHER: list[tuple[str, str, int, str]] = [
    ("no bearer token, or a wrong one (token set)", "/v1/score", 401, "authorization")]


def render_table() -> str:
    """The README's bad-request table, one row per case."""
    rows = ["| # | bad request | endpoint | status | the message names |", "|---|---|---|---|---|"]
    dummy = {"patient_id": "p", "lesions": [{"isic_id": "i", "crop": "AAAA"}]}
    cases = [(c, make(copy.deepcopy(dummy)).get("path", "/v1/score"), st, f)
             for c, make, st, f in BAD] + OTHER
    for i, (case, path, status, field) in enumerate(cases, 1):
        rows.append(f"| {i} | {case} | `POST {path}` | {status} | `{field}` |")
    return "\n".join(rows) + "\n"


BLOCK = re.compile(r"(<!-- table:bad-requests -->\n).*?(<!-- /table:bad-requests -->)", re.S)
README = Path(__file__).resolve().parents[1] / "README.md"
