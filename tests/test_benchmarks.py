"""BENCHMARKS.md agrees with benchmarks/results/*.json; benchmark scripts run on any machine."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bench_scripts import load_script

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def _render():
    module = load_script("render")
    return module


def test_page_matches_results():
    """Every marked table of BENCHMARKS.md is exactly what render.py makes of the results."""
    render = _render()
    text = (REPO / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert render.update(text, render.TABLES) == text, "run `python benchmarks/render.py`"


def _plan():
    module = load_script("plan")
    return module


def test_every_results_file_and_table_is_made_by_make_bench():
    """`make bench` (benchmarks/plan.py) writes every results file, and each table's file
    with the script the table names: a fresh clone regenerates the whole page."""
    plan, render = _plan(), _render()
    writes = {f: plan.script_of(c) for f, c in plan.PLAN}
    assert len(writes) == len(plan.PLAN), "two plan entries write one results file"
    for script in writes.values():
        assert (REPO / script).is_file(), script
    for results, command in plan.PLAN:  # an --out names the file the plan says it writes
        words = command.split()
        if "--out" in words:
            assert Path(words[words.index("--out") + 1]).name == results, command
    for path in (BENCH / "results").glob("*.json"):
        assert path.name in writes, f"{path.name}: no benchmarks/plan.py command writes it"
    for name, table in render.TABLES.items():
        assert table.source in writes, f"table {name}: {table.source} is not in the plan"
        assert plan.script_of(table.script) == writes[table.source], name
    order = [plan.script_of(c) for _, c in plan.PLAN]
    first = order.index("benchmarks/bench_pipeline.py")
    for late in ("bench_quality", "bench_fusion", "bench_ceiling", "bench_makeall"):  # its chains
        assert order.index(f"benchmarks/{late}.py") > first, late
    assert [f for f, _ in plan.selected(["ceiling"])] == ["ceiling.json"]


def test_render_templates(tmp_path: Path):
    render = _render()
    (tmp_path / "r.json").write_text(json.dumps({
        "wall": 232, "frac": 0.7731, "n": 401059.0, "long": 28738,
        "models": {"lgbm": {"p": 0.13793}, "xgb": {"p": 0.1362}}}))
    plain = render.Table("r.json", "bench_r.py", ["a", "{n:int} rows"],
                         [["{wall:dur}", "{frac:pct}"], ["{long:dur}", "{models.lgbm.p:.3f}"]])
    each = render.Table("r.json", "bench_r.py", ["model", "p"], [["`{@key}`", "{@.p:.4f}"]],
                        each="models")
    missing = render.Table("nope.json", "bench_nope.py", ["x"], [["{x}"]])
    tables = {"plain": plain, "each": each, "missing": missing}
    page = "".join(f"<!-- table:{n} -->\nold\n<!-- /table:{n} -->\ntext\n" for n in tables)
    out = render.update(page, tables, tmp_path)
    assert "| 3 min 52 s | 77.3% |" in out and "| 7 h 58 min | 0.138 |" in out
    assert "| a | 401,059 rows |" in out
    assert render.lookup({"ci": [0.1, 0.2]}, "ci.1") == 0.2
    with pytest.raises(KeyError, match="ci.2"):
        render.lookup({"ci": [0.1, 0.2]}, "ci.2")
    assert "| `lgbm` | 0.1379 |" in out and "| `xgb` | 0.1362 |" in out
    assert "Not measured yet: run `bench_nope.py`" in out and "old" not in out
    assert render.update(out, tables, tmp_path) == out  # idempotent
    with pytest.raises(KeyError, match="no markers.*missing"):
        render.update(page.split("<!-- table:missing")[0], tables, tmp_path)
    bad = render.Table("r.json", "bench_r.py", ["x"], [["{models.cat.p}"]])
    with pytest.raises(KeyError, match=r"r\.json.*models\.cat\.p"):
        render.render(bad, tmp_path)
    # a field an older file lacks ("?"): "n/a", and a conditions block it lacks: "not recorded"
    older = render.Table("r.json", "bench_r.py", ["{conditions?:cond}"], [["{models.cat?}"]])
    assert render.render(older, tmp_path).splitlines()[::2] == [
        "| conditions not recorded |", "| n/a |"]
    cond = {"cpu_model": "X", "cpu_bf16": True, "gpu": None, "threads": 1, "loader_workers": 0,
            "precision": "32-true"}
    (tmp_path / "c.json").write_text(json.dumps({"conditions": cond}))
    recorded = render.Table("c.json", "bench_c.py", ["{conditions?:cond}"], [])
    assert "| X (bf16), 1 thread(s), 0 loader worker(s), 32-true |" in render.render(
        recorded, tmp_path)


def test_no_machine_paths_in_benchmarks():
    """Data is read relative to the repository (../shared), never from one machine's paths."""
    pattern = re.compile(r"""["'](/work|/home|/Users|/tmp|/mnt|/data)/""")
    for path in sorted(BENCH.glob("*.py")):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert not pattern.search(line), f"{path.name}:{i}: {line.strip()}"


def _strings(node):
    if isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
    elif isinstance(node, str):
        yield node


def test_results_files_hold_no_machine_paths():
    """A results file names data and runs relative to the repository: no absolute path (of
    this machine or any other) in any key or value."""
    files = sorted((BENCH / "results").rglob("*.json"))
    assert files
    for path in files:
        for text in _strings(json.loads(path.read_text(encoding="utf-8"))):
            assert not re.search(r"(^|[\s'\"(=:])/[\w.+-]+/", text), f"{path.name}: {text[:120]}"


def test_bench_features_skips_without_shared(tmp_path: Path):
    """Without ../shared beside the repository the benchmark says why and exits 0."""
    copy = tmp_path / "repo" / "benchmarks"
    copy.mkdir(parents=True)
    (copy / "bench_features.py").write_bytes((BENCH / "bench_features.py").read_bytes())
    proc = subprocess.run([sys.executable, str(copy / "bench_features.py")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "skip bench_features" in proc.stdout and "real-dev" in proc.stdout
    assert not (copy / "results").exists()


def test_bench_quality_on_a_small_run(mini_isic: Path, mini_artifacts: Path, tmp_path: Path):
    """bench_quality.py's figures from folds + OOF files + the oracle (no training here)."""
    import polars as pl

    module = load_script("bench_quality")
    art = tmp_path / "art"
    (art / "oof").mkdir(parents=True)
    folds = pl.read_parquet(mini_artifacts / "folds.parquet")
    folds.write_parquet(art / "folds.parquet")
    oracle = pl.read_parquet(mini_isic / "oracle.parquet").select("isic_id", "prob")
    folds.join(oracle, on="isic_id").select("isic_id", "fold", pred="prob").write_parquet(
        art / "oof" / "perfect.parquet")
    folds.join(oracle, on="isic_id").select("isic_id", "fold", pred="prob").write_parquet(
        art / "oof" / "fused_image_part.parquet")  # a fused run's image term: the run's record
    (art / "runs" / "fused").mkdir(parents=True)
    (art / "runs" / "fused" / "provenance.json").write_text(json.dumps(
        {"inputs": {}, "conditions": {"cpu_model": "X", "threads": 1}}))
    q = module.quality(art, mini_isic)
    assert q["rows"] == folds.height and q["positives"] == int(folds["target"].sum())
    assert q["models"]["perfect"]["share_of_oracle"] == pytest.approx(1.0)
    assert q["models"]["perfect"]["conditions"] is None  # no run record: none made up
    assert q["models"]["fused_image_part"]["conditions"] == {"cpu_model": "X", "threads": 1}
    render = _render()
    table = render.render(render.TABLES["quality-synthetic"], _write_results(tmp_path, q))
    assert "| `perfect` |" in table and "100.0%" in table


def _write_results(tmp_path: Path, q: dict) -> Path:
    results = tmp_path / "results"
    results.mkdir()
    (results / "quality.json").write_text(json.dumps(q))
    return results


def test_settings_summary_pairs_runs_by_seed(tmp_path: Path, monkeypatch):
    """bench_settings: each setting is compared with off by `isic compare` over the seeds run
    both ways (a seed run one way only is listed, not paired); a planted gain is found."""
    import numpy as np
    import polars as pl

    mod = load_script("bench_settings")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(mod, "RUNS", tmp_path / "runs")
    (tmp_path / "runs").mkdir()
    rng = np.random.default_rng(0)
    n = 4000
    ids = [f"ISIC_{i:07d}" for i in range(n)]
    y = (rng.random(n) < 0.04).astype(int)
    patient = rng.integers(0, 500, n)
    conditions = {"cpu_model": "x", "cpu_bf16": True, "gpu": None, "threads": 1,
                  "loader_workers": 0, "libraries": {}}
    for setting, seed, gain in [("off", 1, 0), ("colour", 1, 1.0), ("off", 2, 0),
                                ("colour", 2, 1.0), ("off", 3, 0)]:
        art = tmp_path / mod.ART / f"{setting}_seed{seed}"
        (art / "oof").mkdir(parents=True)
        (art / "runs" / mod.RUN_NAME).mkdir(parents=True)
        fold = (patient + seed) % 5
        pl.DataFrame({"isic_id": ids, "patient_id": patient.astype(str), "target": y,
                      "fold": fold}).write_parquet(art / "folds_images.parquet")
        pred = y * (0.8 + gain) + rng.normal(size=n)
        pl.DataFrame({"isic_id": ids, "fold": fold, "pred": pred}).write_parquet(
            art / "oof" / f"{mod.RUN_NAME}.parquet")
        (art / "runs" / mod.RUN_NAME / "provenance.json").write_text(
            json.dumps({"conditions": conditions}))
        (tmp_path / "runs" / f"{setting}_seed{seed}.json").write_text(json.dumps(
            {"oof_pauc": 0.1 + gain / 10, "oof_auc": 0.8, "mean_fold_pauc": 0.1,
             "seconds": 1.0, "config": {"cpu_threads": 1}}))
    out = mod.summarise([1, 2, 3], list(mod.SETTINGS), n_boot=200)
    assert set(out["runs"]) == {"off_seed1", "colour_seed1", "off_seed2", "colour_seed2",
                                "off_seed3"}
    assert out["settings"]["off"]["seeds"] == [1, 2, 3]
    assert out["settings"]["colour"]["oof_pauc"]["mean"] == pytest.approx(0.2)
    assert set(out["comparisons"]) == {"colour"}  # ema was never run
    cmp = out["comparisons"]["colour"]
    assert cmp["seeds"] == [1, 2] and cmp["n_seeds"] == 2 and cmp["verdict"] == "b higher"
    assert cmp["bootstrap"]["ci"][0] > 0 and cmp["conditions_differ"] == []
    assert str(tmp_path) not in json.dumps(out)  # run names relative: no machine paths


def test_fusion_scores_compare_the_recipes_fold_by_fold(tmp_path: Path):
    """bench_fusion: the tabular input, the chain's fused model (and its image term) and the
    other recipe are scored on the chain's folds; a model that tracks the oracle's image part
    gets the higher Spearman."""
    import numpy as np
    import polars as pl

    mod = load_script("bench_fusion")
    rng = np.random.default_rng(0)
    n = 3000
    ids = [f"ISIC_{i:07d}" for i in range(n)]
    tab, img = rng.normal(size=n), rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(2 * (tab + img) - 5)))).astype(int)
    fold = np.arange(n) % 3
    chain, art = tmp_path / "chain", tmp_path / "art"
    for d in (chain / "oof", art / "oof"):
        d.mkdir(parents=True)
    pl.DataFrame({"isic_id": ids, "target": y, "fold": fold}).write_parquet(
        chain / "folds.parquet")

    def oof(path: Path, score: np.ndarray) -> None:
        pl.DataFrame({"isic_id": ids, "fold": fold, "pred": 1 / (1 + np.exp(-score))}
                     ).write_parquet(path)

    oof(chain / "oof" / "lgbm.parquet", tab + rng.normal(size=n))
    oof(chain / "oof" / "vision_fused.parquet", tab + img + 0.3 * rng.normal(size=n))
    oof(chain / "oof" / "vision_fused_image_part.parquet", img + rng.normal(size=n))
    oof(art / "oof" / "vision_fromimg.parquet", tab + rng.normal(size=n))
    pl.DataFrame({"isic_id": ids, "logit_image": img}).write_parquet(tmp_path / "oracle.parquet")
    out = mod.scores(chain, art, tmp_path / "oracle.parquet")
    assert out["vision_fused"]["spearman_logit_image"] > 0.4
    assert out["vision_fused_image_part"]["spearman_logit_image"] > 0.5
    assert abs(out["vision_fromimg"]["spearman_logit_image"]) < 0.1
    assert out["vision_fused"]["oof_pauc"] > out["vision_fromimg"]["oof_pauc"] + 0.01
    assert set(out["lgbm"]["fold_pauc"]) == {0, 1, 2}
    (art / "oof" / "vision_fromimg.parquet").unlink()  # the other recipe not run: n/a
    out = mod.scores(chain, art, tmp_path / "oracle.parquet")
    assert out["vision_fromimg"]["oof_pauc"] is None and out["vision_fromimg"]["fold_pauc"] is None
    assert out["vision_fused"]["oof_pauc"] > out["lgbm"]["oof_pauc"] + 0.01
