"""The scoring API in process (FastAPI TestClient) over a real Scorer on a small bundle and a
prediction log in a tmp folder: answers, the log, outcomes, the token, a failing log, batching
of concurrent requests, and the bad-request table (README: bad inputs).
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_bad_requests import BAD, BLOCK, README, render_table
from api_fixtures import lesions_of, make_bundle
from fastapi.testclient import TestClient

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
def scorer(clinic_calibrated: Path, mini_isic: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Scorer:
    folder = make_bundle(clinic_calibrated, mini_isic, tmp_path_factory.mktemp("api") / "bundle")
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


def test_score_round_trip(client: TestClient, scorer: Scorer, good: dict, log_path: Path):
    before = logged(log_path)
    r = client.post("/v1/score", json=good)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == scorer.version and "not a medical device" in body["notice"]
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


def test_model_and_probes(client: TestClient, scorer: Scorer):
    assert client.get("/healthz").json() == {"status": "alive"}
    assert client.get("/readyz").json()["status"] == "ready"
    model = client.get("/v1/model").json()
    assert model["version"] == scorer.version and model["scorers"]["full"]["name"] == "stack"


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
    """Six requests at once: fewer batches than requests, each answer its own lesions with
    the scores the request gets alone (a batch keeps patients apart)."""
    app = create_app(scorer, store, CFG)
    patients = [lesions_of(mini_isic, p, n=4) for p in _patients(mini_isic, 6)]
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


# the bad-request table (tests/api_bad_requests.py; README: bad requests)
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


def test_readme_table_lists_every_bad_request():
    m = BLOCK.search(README.read_text(encoding="utf-8"))
    assert m, "README.md has no <!-- table:bad-requests --> block"
    assert m.group(0) == m.group(1) + render_table() + m.group(2), \
        "run `python tests/test_api.py` to rewrite the README table"


if __name__ == "__main__":  # rewrite the README table from BAD
    text = README.read_text(encoding="utf-8")
    README.write_text(BLOCK.sub(lambda m: m.group(1) + render_table() + m.group(2), text))
