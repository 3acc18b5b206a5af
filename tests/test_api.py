"""The scoring API in process (FastAPI TestClient) over a real Scorer on a small bundle and a
prediction log in a tmp folder: answers, the log, outcomes, the token, a failing log, batching
of concurrent requests, and the bad-request table (README: bad inputs).
"""

from __future__ import annotations

import asyncio
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

import httpx
import pytest
from api_fixtures import lesions_of, make_bundle
from fastapi.testclient import TestClient
from PIL import Image

from isicstack.api.config import ServeConfig
from isicstack.api.routes import create_app
from isicstack.api.server import token_of
from isicstack.serving.predlog import (
    LogWriteError,
    PredictionLog,
    read_outcomes,
    read_predictions,
)
from isicstack.serving.scorer import Scorer
from isicstack.settings.keys import ConfigError

TOKEN = "t0k3n-" * 4
CFG = ServeConfig(max_body_mb=1.0, max_lesions=10, max_pixels=1_000_000, batch_wait_ms=20,
                  cpu_threads=1)


@pytest.fixture(scope="module")
def scorer(clinic_calibrated: Path, tmp_path_factory: pytest.TempPathFactory) -> Scorer:
    folder = make_bundle(clinic_calibrated, tmp_path_factory.mktemp("api") / "bundle")
    return Scorer.from_bundle(folder, 1)


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("log") / "predictions.sqlite"


@pytest.fixture(scope="module")
def store(log_path: Path) -> PredictionLog:
    return PredictionLog(log_path, key=b"api-test-key" * 3)


@pytest.fixture(scope="module")
def client(scorer: Scorer, store: PredictionLog):
    with TestClient(create_app(scorer, store, CFG)) as c:
        yield c


@pytest.fixture(scope="module")
def good(mini_isic: Path) -> dict[str, Any]:
    """A valid request: six lesions of the test patient with most lesions."""
    patient, lesions = lesions_of(mini_isic, n=6)
    return {"patient_id": patient, "lesions": lesions}


def logged(path: Path) -> int:
    return read_predictions(path).height


def test_score_round_trip(client: TestClient, good: dict, log_path: Path):
    before = logged(log_path)
    r = client.post("/v1/score", json=good)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == "test-0001" and "not a medical device" in body["notice"]
    ids = [les["isic_id"] for les in good["lesions"]]
    assert [a["isic_id"] for a in body["lesions"]] == ids
    for a in body["lesions"]:
        assert 0.0 <= a["risk"] <= 1.0 and isinstance(a["flag"], bool)
        assert a["scorer"] == "full" and a["model"] == "stack"
        assert a["request_id"] == body["request_id"] and isinstance(a["warnings"], list)
    rows = read_predictions(log_path)
    assert rows.height == before + len(ids)
    mine = rows.filter(rows["request_id"] == body["request_id"])
    assert sorted(mine["lesion_id"].to_list()) == sorted(ids)
    for col, dtype in rows.schema.items():  # the patient id is kept only as a keyed hash
        if dtype == str:  # noqa: E721
            assert not any(good["patient_id"] in (v or "") for v in rows[col].to_list()), col


def test_outcome_for_scored_and_unknown_lesions(client: TestClient, good: dict, log_path: Path):
    lesion = good["lesions"][0]["isic_id"]
    ids = []
    for malignant in (True, False):  # a biopsy, then a second opinion: two rows
        r = client.post("/v1/outcomes", json={"isic_id": lesion, "malignant": malignant})
        assert r.status_code == 200, r.text
        assert r.json()["isic_id"] == lesion and r.json()["recorded"] == 1
        ids.append(r.json()["outcome_id"])
    assert ids[1] > ids[0]
    outcomes = read_outcomes(log_path)
    assert outcomes.filter(outcomes["lesion_id"] == lesion).height == 2
    r = client.post("/v1/outcomes", json={"isic_id": "ISIC_never", "malignant": False,
                                          "reason": "audit"})
    assert r.status_code == 404 and "isic_id" in r.json()["detail"]


def test_model_and_probes(client: TestClient):
    assert client.get("/healthz").json() == {"status": "alive"}
    assert client.get("/readyz").json()["status"] == "ready"
    model = client.get("/v1/model").json()
    assert model["version"] == "test-0001" and model["scorers"]["full"]["name"] == "stack"


def test_token_required_and_checked(scorer: Scorer, store: PredictionLog, good: dict):
    with TestClient(create_app(scorer, store, CFG, token=TOKEN)) as c:
        one = {**good, "lesions": good["lesions"][:1]}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = c.post("/v1/score", json=one, headers=headers)
            assert r.status_code == 401 and "authorization" in r.json()["detail"], headers
        assert c.get("/healthz").status_code == 200  # probes stay open
        r = c.post("/v1/score", json=one, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200, r.text


def test_token_of_refuses_open_host_without_token(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ISIC_API_TOKEN", raising=False)
    assert token_of(ServeConfig()) == ""
    with pytest.raises(ConfigError, match="ISIC_API_TOKEN"):
        token_of(ServeConfig(host="0.0.0.0"))
    monkeypatch.setenv("ISIC_API_TOKEN", "short")
    with pytest.raises(ConfigError, match="at least 16"):
        token_of(ServeConfig(host="0.0.0.0"))
    monkeypatch.setenv("ISIC_API_TOKEN", TOKEN)
    assert token_of(ServeConfig(host="0.0.0.0")) == TOKEN


class FailingLog:
    """A log whose disk went away: every write fails."""

    def record(self, rows: list[dict[str, Any]]) -> None:
        raise LogWriteError("disk I/O error")


def test_failing_log_answers_503_and_acknowledges_nothing(scorer: Scorer, good: dict,
                                                          log_path: Path):
    before = logged(log_path)
    with TestClient(create_app(scorer, FailingLog(), CFG)) as c:
        r = c.post("/v1/score", json=good)
        assert r.status_code == 503 and "lesions" not in r.json()
        assert "LogWriteError" in r.json()["detail"]
        assert c.get("/readyz").status_code == 200  # the scoring thread lives on
    assert logged(log_path) == before


def test_concurrent_requests_are_batched(scorer: Scorer, store: PredictionLog,
                                         mini_isic: Path, good: dict):
    """Eight requests at once: fewer batches than requests, each answer its own lesions with
    the scores the request gets alone (a batch keeps patients apart)."""
    app = create_app(scorer, store, CFG)
    patients = [lesions_of(mini_isic, p, n=5) for p in _patients(mini_isic, 8)]
    alone = {}
    with TestClient(app) as c:
        for pid, lesions in patients:
            for a in c.post("/v1/score", json={"patient_id": pid, "lesions": lesions}
                            ).json()["lesions"]:
                alone[a["isic_id"]] = a["score"]
        before = app.state.batcher.batches

        async def burst() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as ac:
                return await asyncio.gather(*(ac.post("/v1/score", json={
                    "patient_id": pid, "lesions": les}) for pid, les in patients))

        answers = asyncio.run(burst())
        assert app.state.batcher.batches - before < len(patients)
    for (_, lesions), r in zip(patients, answers, strict=True):
        assert r.status_code == 200, r.text
        got = r.json()["lesions"]
        assert [a["isic_id"] for a in got] == [les["isic_id"] for les in lesions]
        for a in got:
            assert a["score"] == pytest.approx(alone[a["isic_id"]], abs=1e-6)


def _patients(data: Path, n: int) -> list[str]:
    import polars as pl

    test = pl.read_csv(data / "test-metadata.csv", columns=["patient_id"])
    return test["patient_id"].unique(maintain_order=True).head(n).to_list()


# ---- the bad-request table (README: bad inputs) -------------------------------------------

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


@pytest.mark.parametrize(("case", "make", "status", "field"), BAD, ids=[b[0] for b in BAD])
def test_bad_request(client: TestClient, good: dict, log_path: Path, case: str,
                     make: Callable[[dict], dict], status: int, field: str):
    before = logged(log_path)
    kw = make(copy.deepcopy({**good, "lesions": good["lesions"][:1]}))
    r = client.post(kw.pop("path", "/v1/score"), **kw)
    assert r.status_code == status, r.text
    assert field in json.dumps(r.json()["detail"]), r.text
    assert logged(log_path) == before
    assert client.get("/readyz").status_code == 200


def test_still_scores_after_bad_requests(client: TestClient, good: dict):
    assert client.post("/v1/score", json=good).status_code == 200


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


def test_readme_table_lists_every_bad_request():
    m = BLOCK.search(README.read_text(encoding="utf-8"))
    assert m, "README.md has no <!-- table:bad-requests --> block"
    assert m.group(0) == m.group(1) + render_table() + m.group(2), \
        "run `python tests/test_api.py` to rewrite the README table"


if __name__ == "__main__":  # rewrite the README table from BAD
    text = README.read_text(encoding="utf-8")
    README.write_text(BLOCK.sub(lambda m: m.group(1) + render_table() + m.group(2), text))
