"""``isic replay``'s stream, built without a server: exact windows of whole patients, shifts
planted where the manifest says and nowhere else, new seeds and new patients. The HTTP part
(the running service) is covered by benchmarks/bench_replay.py."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from isicstack.data.crops import decode_jpeg
from isicstack.monitoring import stream
from isicstack.monitoring.replay import outcomes_of, requests_of
from isicstack.monitoring.replay_config import ReplayConfig
from isicstack.settings.keys import ConfigError
from isicstack.synthetic.generate import simulate


@pytest.fixture(scope="module")
def built() -> tuple[ReplayConfig, list[stream.Window], dict[str, stream.Pool]]:
    cfg = ReplayConfig(profile="smoke", window=100, clean=2, shift_windows=1, gap=1)
    train = stream.synth_settings(cfg)
    pools = stream.pools(cfg, train, stream.layout(cfg))  # the same pools, unshifted
    return cfg, list(stream.windows(cfg, train)), pools


def test_layout_and_exact_windows(built):
    cfg, wins, pools = built
    assert [w.shift for w in wins] == stream.layout(cfg) == [
        "clean", "clean", "centre", "clean", "age", "clean", "colour", "clean", "prevalence"]
    seen: set[str] = set()
    for w in wins:
        assert w.rows.height == cfg.window and set(w.crops) == set(w.rows["isic_id"])
        ids = set(w.rows["isic_id"])
        assert not ids & seen  # no lesion sent twice
        seen |= ids
        pool = pools[stream.pool_of(w.shift)].rows
        full = pool.filter(pl.col("patient_id").is_in(w.rows["patient_id"].unique().to_list()))
        sizes = dict(full.group_by("patient_id").len().iter_rows())
        got = w.rows.group_by("patient_id", maintain_order=True).len()
        assert all(sizes[p] == n for p, n in got.rows()[:-1])  # whole patients ...
        assert got["len"][-1] <= sizes[got["patient_id"][-1]]  # ... the last one trimmed
        assert (w.summary()["positives"] > 0) or w.shift != "prevalence"


def test_shifts_planted_where_the_manifest_says(built):
    cfg, wins, pools = built
    by_id = pools[stream.CLEAN].rows
    for w in wins:
        base = by_id.join(w.rows.select("isic_id"), on="isic_id", how="semi").sort("isic_id")
        rows = w.rows.sort("isic_id")
        new_centre = rows["attribution"] == cfg.centre
        if w.shift == "centre":
            assert 0.1 <= new_centre.mean() <= cfg.centre_share == pytest.approx(0.2)
            assert w.summary()["centre_share"] == pytest.approx(new_centre.mean(), abs=1e-3)
            per_patient = rows.group_by("patient_id").agg(
                (pl.col("attribution") == cfg.centre).n_unique())
            assert per_patient["attribution"].max() == 1  # whole patients move centre
        else:
            assert not new_centre.any()
        if w.shift == "prevalence":
            assert rows["isic_id"].str.contains("B_").all()
            continue
        age_gap = (rows["age_approx"] - base["age_approx"]).drop_nulls().unique().to_list()
        assert age_gap == [cfg.age_years if w.shift == "age" else 0.0]
        if w.shift == "colour":
            assert w.summary()["cast_crops"] == round(cfg.cast_share * cfg.window)


def test_colour_cast_moves_the_crops_it_says(built):
    cfg, wins, _ = built
    colour = next(w for w in wins if w.shift == "colour")
    again = stream.plant(stream.Window(colour.index, stream.CLEAN, colour.rows, {
        **colour.crops}), cfg, 90)  # a clean window is returned as it is
    assert again.crops == colour.crops
    cfg0 = replace(cfg, cast_share=0.0)
    plain = next(w for w in stream.windows(cfg0) if w.index == colour.index)  # no cast
    assert plain.summary()["cast_crops"] == 0 and set(plain.crops) == set(colour.crops)
    moved = [i for i in plain.crops if plain.crops[i] != colour.crops[i]]
    assert len(moved) == colour.summary()["cast_crops"]
    dr = np.mean([decode_jpeg(colour.crops[i])[..., 0].mean()
                  - decode_jpeg(plain.crops[i])[..., 0].mean() for i in moved])
    assert dr > 15  # red raised by the cast (clipped at 255 in bright pixels)


def test_seeds_and_patients_are_new(built):
    cfg, wins, _ = built
    train = stream.synth_settings(cfg)
    assert train.seed not in stream.stream_seeds(cfg, train)
    with pytest.raises(ConfigError, match="seed"):
        stream.stream_seeds(ReplayConfig(profile="smoke", seed=train.seed - 1), train)
    c, _, _ = simulate(train)
    old_patients, old_ids = set(c["patient_id"]), set(c["isic_id"])
    for w in wins:
        assert not set(w.rows["patient_id"]) & old_patients
        assert not set(w.rows["isic_id"]) & old_ids


def test_requests_and_outcomes(built):
    cfg, wins, _ = built
    w = wins[0]
    reqs = requests_of(w, max_lesions=7)
    assert sum(len(r["lesions"]) for r in reqs) == w.rows.height
    assert all(len(r["lesions"]) <= 7 and "target" not in r["lesions"][0] for r in reqs)
    for r in reqs:  # one patient per request, its own lesions only
        mine = w.rows.filter(pl.col("patient_id") == r["patient_id"])["isic_id"].to_list()
        assert {les["isic_id"] for les in r["lesions"]} <= set(mine)
    answers = {i: {"flag": k % 10 == 0} for k, i in enumerate(w.rows["isic_id"])}
    posted = outcomes_of(w, answers, 0.05, np.random.default_rng(0))
    biopsy = [o for o in posted if o["reason"] == "biopsy"]
    assert len(biopsy) == 10 and len(posted) - len(biopsy) == round(0.05 * 90)
    labels = dict(w.rows.select("isic_id", "target").iter_rows())
    assert all(o["malignant"] == bool(labels[o["isic_id"]]) for o in posted)
