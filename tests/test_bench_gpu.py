"""``benchmarks/bench_gpu.py`` without a GPU: its skip path, its pure functions, and its
orchestration with the GPU measurements faked (the real run needs a lent CUDA device)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from bench_scripts import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def bench() -> ModuleType:
    module = load_script("bench_gpu")
    return module


def test_skips_cleanly_without_cuda(bench: ModuleType, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]):
    monkeypatch.setattr(bench.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    assert bench.main([]) == 0
    assert capsys.readouterr().out.startswith("skip: no CUDA device")
    assert not list(tmp_path.iterdir())


def test_pure_functions(bench: ModuleType, tmp_path: Path):
    assert bench.loader_cores(8001.0, 800.0) == 11 and bench.loader_cores(800.0, 800.0) == 1
    with pytest.raises(ValueError):
        bench.loader_cores(1.0, 0.0)
    images = tmp_path / "images"
    assert "ISIC_SHARED" in bench.cv_skip_reason(images, 0.0)
    images.mkdir()
    for name in ("train-image.hdf5", "labels.csv"):
        (images / name).write_text("x")
    assert bench.cv_skip_reason(images, 10.0) is None
    assert "needed" in bench.cv_skip_reason(images, bench.BUDGET_S - 10.0)
    assert bench.fill_loader_json(tmp_path / "none.json", 1.0, "x") is None
    loader = tmp_path / "loader.json"
    loader.write_text(json.dumps({"gpu_feed": {"per_worker_img_s": 700.0,
                                               "gpu_train_img_s": "missing"}}))
    feed = bench.fill_loader_json(loader, 9000.0, "gpu.json")
    assert feed == json.loads(loader.read_text())["gpu_feed"]
    assert feed["gpu_train_img_s"] == 9000.0 and feed["loader_cores"] == 13


def test_worker_rate_runs_on_cpu(bench: ModuleType):
    out = bench.worker_rate(300, workers=1)  # 3 batches of 128: 2 timed
    assert out["n_images"] == 300 and out["per_worker_img_s"] > 0


def test_real_dev_cv_uses_the_gpu_profile(bench: ModuleType, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch):
    import isicstack.vision.train as train
    from isicstack.ledger.result import FoldScore, RunResult

    seen = {}

    def fake_run(cfg):
        seen["cfg"] = cfg
        return [RunResult("image", "vision_x", 0.1, 0.8, 100, 5,
                          {k: FoldScore(0.1, 0.8, 1.0) for k in range(5)},
                          details={"precision": "bf16"})]

    monkeypatch.setattr(train, "run", fake_run)
    monkeypatch.chdir(tmp_path)
    out = bench.real_dev_cv(bench.REPO.parent / "shared" / "real-dev" / "images")
    cfg = seen["cfg"]
    assert (cfg.model.name, cfg.model.image_size, cfg.data.batch_size, cfg.optim.steps) == (
        "resnet50", 128, 128, 600)
    assert not cfg.resume and not Path(cfg.images_path).is_absolute()
    assert out["trained_crops"] == 5 * 600 * 128 and out["oof_pauc"] == 0.1
    assert out["mean_fold_pauc"] == pytest.approx(0.1) and out["precision"] == "bf16"
    assert out["fold_pauc"] == {str(k): 0.1 for k in range(5)}


def test_main_with_faked_gpu_writes_results(bench: ModuleType, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch):
    import bench_vision  # on sys.path: bench_gpu put its folder there

    results, copies = tmp_path / "results", tmp_path / "out"
    results.mkdir()
    copies.mkdir()
    (results / "loader.json").write_text(json.dumps({"gpu_feed": {"per_worker_img_s": 600.0}}))
    monkeypatch.setattr(bench, "RESULTS", results)
    monkeypatch.setattr(bench.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(bench.torch.cuda, "get_device_name", lambda i=0: "Fake H200")

    def fake_vision(argv):
        out = Path(argv[argv.index("--out") + 1])
        out.write_text(json.dumps({"in_memory": {"train_img_s": 6000.0, "eval_img_s": 20000.0},
                                   "loader_fed_train_img_s": 5000.0, "fed_over_in_memory": 0.83,
                                   "loader_only_img_s": 7000.0}))
        return 0

    monkeypatch.setattr(bench_vision, "main", fake_vision)
    monkeypatch.setattr(bench_vision, "REAL_IMAGES", tmp_path / "absent")
    monkeypatch.setattr(bench, "worker_rate", lambda n: {"per_worker_img_s": 1000.0})
    assert bench.main(["--copy-to", str(copies)]) == 0
    gpu = json.loads((results / "gpu.json").read_text())
    assert gpu["loader_cores"] == 6 and gpu["gpu"] == "Fake H200"
    assert "ISIC_SHARED" in gpu["real_dev_cv"]["skipped"]
    assert str(tmp_path) not in (results / "gpu.json").read_text()  # no machine paths
    feed = json.loads((results / "loader.json").read_text())["gpu_feed"]
    assert feed["gpu_train_img_s"] == 6000.0 and feed["loader_cores"] == 10
    assert sorted(p.name for p in copies.iterdir()) == ["gpu.json", "loader.json",
                                                        "vision_gpu.json"]
    assert "bench_vision" in sys.modules
