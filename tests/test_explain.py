"""Grad-CAM (``isic explain``): one PNG per id, probabilities from the shared prediction path,
the library's maps on the last backbone stage, and clear errors for bad ids, runs and extras.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from explain_fixtures import RUN, make_image_only_run
from torch import nn
from vision_fixtures import SIZE, tiny_model

from isicstack.explain.cam import cam_maps, last_stage_name, target_layer
from isicstack.explain.config import ExplainConfig
from isicstack.explain.explain import run
from isicstack.explain.figures import overlay, panel
from isicstack.extras import MissingExtraError
from isicstack.inference.config import PredictImagesConfig
from isicstack.inference.predict_images import run as predict_images
from isicstack.pipelines.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IDS = ["ISIC_0000000", "ISIC_0000001", "ISIC_0000004"]  # positive, negative, positive


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_image_only_run(tmp_path_factory.mktemp("explain"))


def _cfg(d: dict[str, Path], out: Path, **kw: object) -> ExplainConfig:
    base: dict = {"data_dir": str(d["data"]), "artifacts": str(d["artifacts"]), "name": RUN,
                  "out": str(out), "cpu_threads": 1, "display_size": 64}
    return ExplainConfig(**{**base, **kw})


def test_explain_writes_one_png_per_id(trained: dict[str, Path], tmp_path: Path):
    out = run(_cfg(trained, tmp_path / "cam", isic_ids=IDS))
    assert [i["isic_id"] for i in out["items"]] == IDS and out["folds"] == 3
    for item in out["items"]:
        data = (tmp_path / "cam" / item["png"]).read_bytes()
        assert data[:8] == PNG_MAGIC
    from PIL import Image

    with Image.open(tmp_path / "cam" / f"{IDS[0]}.png") as img:
        assert img.size == (64 + 4 + 64, 64)  # crop | overlay, enlarged to display_size
    saved = json.loads((tmp_path / "cam" / "explain.json").read_text())
    assert saved["items"] == out["items"]
    # the probability is what `isic predict-images` gives for the same crops
    scores = predict_images(PredictImagesConfig(
        artifacts=str(trained["artifacts"]), name=RUN, images=str(trained["data"] /
                                                                  "train-image.hdf5"),
        out=str(tmp_path / "scores.csv"), cpu_threads=1, accelerator="cpu"))
    ref = dict(pl.read_csv(scores["out"]).iter_rows())
    for item in out["items"]:
        assert item["prob"] == pytest.approx(ref[item["isic_id"]], abs=1e-6)


def test_ids_file_plain_and_csv(trained: dict[str, Path], tmp_path: Path):
    plain = tmp_path / "ids.txt"
    plain.write_text(f"{IDS[1]}\n\n{IDS[1]}\n")
    csv = tmp_path / "ids.csv"
    csv.write_text(f"isic_id,note\n{IDS[2]},x\n")
    out = run(_cfg(trained, tmp_path / "a", isic_ids=[IDS[0]], ids_file=str(plain)))
    assert [i["isic_id"] for i in out["items"]] == IDS[:2]
    out = run(_cfg(trained, tmp_path / "b", ids_file=str(csv)))
    assert [i["isic_id"] for i in out["items"]] == [IDS[2]]


def test_bad_ids_and_paths_are_named(trained: dict[str, Path], tmp_path: Path, capsys):
    with pytest.raises(ValueError, match=r"train-image.hdf5: no crop for isic_id ISIC_NOPE"):
        run(_cfg(trained, tmp_path, isic_ids=[IDS[0], "ISIC_NOPE"]))
    with pytest.raises(ValueError, match=r"give isic_ids=\[ISIC_\.\.\.\] or ids_file"):
        run(_cfg(trained, tmp_path))
    with pytest.raises(FileNotFoundError, match="nowhere.hdf5: no such HDF5"):
        run(_cfg(trained, tmp_path, isic_ids=IDS, images=str(tmp_path / "nowhere.hdf5")))
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        run(_cfg(trained, tmp_path, isic_ids=IDS, name="vision_none"))
    code = main(["explain", f"artifacts={trained['artifacts']}", f"data_dir={trained['data']}",
                 "isic_ids=[ISIC_NOPE]", "cpu_threads=1", f"out={tmp_path / 'cli'}"])
    assert code == 1 and "no crop for isic_id ISIC_NOPE" in capsys.readouterr().err
    assert main(["explain", f"artifacts={trained['artifacts']}", f"data_dir={trained['data']}",
                 "--isic-ids", f"{IDS[0]},{IDS[1]}", "cpu_threads=1",
                 f"out={tmp_path / 'cli'}"]) == 0
    assert (tmp_path / "cli" / f"{IDS[0]}.png").is_file()
    assert (tmp_path / "cli" / f"{IDS[1]}.png").is_file()


def test_target_layer_is_last_backbone_stage():
    net = tiny_model()
    assert last_stage_name(net.backbone) == "layer4"
    # the deepest stage whose map is at least 4 cells wide at the input size
    assert [last_stage_name(net.backbone, size, 4) for size in (32, 64, 128)] == [
        "layer2", "layer3", "layer4"]
    assert target_layer(net) is net.backbone.layer4
    assert target_layer(net, "backbone.layer3") is net.backbone.layer3
    with pytest.raises(ValueError, match="'backbone.layer9' not found"):
        target_layer(net, "backbone.layer9")
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert last_stage_name(plain) == "2"  # no feature_info: the last module with 4-D output


class _Quadrant(nn.Module):
    """Logit = mean of a feature map over the crop; only the top-left quadrant is bright."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 2, 1))
        self.tab_skip = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).mean(dim=(1, 2, 3))


def test_cam_points_at_the_evidence():
    """The map peaks where the input drives the logit (no flip or transpose on the way)."""
    net = _Quadrant()
    with torch.no_grad():
        net.backbone[0].weight.fill_(1.0)
        net.backbone[0].bias.zero_()
    x = torch.zeros(2, 3, SIZE, SIZE)
    x[0, :, :8, :8] = 1.0  # top-left
    x[1, :, 20:, 24:] = 1.0  # bottom-right
    maps = cam_maps([net, net], x, layer="backbone.0")
    assert maps.shape == (2, SIZE, SIZE) and maps.min() >= 0 and maps.max() <= 1
    assert maps[0, :8, :8].mean() > 0.9 and maps[0, 16:, 16:].mean() < 0.1
    assert maps[1, 20:, 24:].mean() > 0.9 and maps[1, :16, :16].mean() < 0.1
    crop = np.zeros((50, 40, 3), np.uint8)
    assert overlay(crop, maps[0]).shape == (50, 40, 3)
    assert panel(crop, maps[0], height=100).shape == (100, 80 + 4 + 80, 3)


def test_fused_model_is_refused():
    net = tiny_model(n_tab=2)
    with pytest.raises(ValueError, match="image-only run"):
        cam_maps([net], torch.zeros(1, 3, SIZE, SIZE))


def test_missing_grad_cam_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'isicstack\[explain\]'"):
        cam_maps([tiny_model()], torch.zeros(1, 3, SIZE, SIZE))


def test_explain_config_resolves():
    assert main(["explain", "--print-config", "isic_ids=[ISIC_1,ISIC_2]"]) == 0


def _report(d: dict[str, Path], out: Path, **kw: object) -> dict:
    from isicstack.calibration.config import OperatingPointConfig
    from isicstack.evaluation.config import DriftConfig, ReportConfig
    from isicstack.evaluation.report import run as report

    return report(ReportConfig(data_dir=str(d["data"]), artifacts=str(d["artifacts"]),
                               out=str(out), operating_point=OperatingPointConfig(n_boot=20),
                               drift=DriftConfig(enabled=False), **kw))


def test_report_shows_top_positives_and_false_positives(trained: dict[str, Path],
                                                        tmp_path: Path, monkeypatch):
    from isicstack.explain.config import GradcamReportConfig

    info = _report(trained, tmp_path / "rep")
    cam = info["gradcam"]
    assert (tmp_path / "rep" / "gradcam.png").read_bytes()[:8] == PNG_MAGIC
    assert "![Grad-CAM](gradcam.png)" in (tmp_path / "rep" / "report.md").read_text()
    folds = pl.read_parquet(trained["artifacts"] / "folds.parquet")
    oof = folds.join(pl.read_parquet(trained["artifacts"] / "oof" / f"{RUN}.parquet"),
                     on="isic_id")
    for key, label in (("positives", 1), ("false_positives", 0)):
        best = oof.filter(pl.col("target") == label).sort("pred", descending=True).head(4)
        assert [r["isic_id"] for r in cam[key]] == best["isic_id"].to_list()
    info = _report(trained, tmp_path / "none", gradcam=GradcamReportConfig(name="vision_nope"))
    assert "no image-only run `vision_nope`" in info["gradcam"]["skipped"]
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)
    _report(trained, tmp_path / "noextra")
    md = (tmp_path / "noextra" / "report.md").read_text()
    assert "## Grad-CAM\n\nSkipped:" in md and "isicstack[explain]" in md


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_explain_on_gpu_matches_cpu(trained: dict[str, Path], tmp_path: Path):
    """On CUDA (bf16 autocast for the score, float32 Grad-CAM) the answer is the CPU one."""
    cpu = run(_cfg(trained, tmp_path / "cpu", isic_ids=IDS))
    gpu = run(_cfg(trained, tmp_path / "gpu", isic_ids=IDS, accelerator="gpu"))
    for a, b in zip(cpu["items"], gpu["items"], strict=True):
        assert b["prob"] == pytest.approx(a["prob"], abs=2e-2)
    from isicstack.explain.maps import crop_maps, load_image_only

    images = trained["data"] / "train-image.hdf5"
    on_cpu = load_image_only(str(trained["artifacts"]), RUN, images, "cpu", 1)
    on_gpu = load_image_only(str(trained["artifacts"]), RUN, images, "gpu")
    assert np.allclose(crop_maps(on_cpu, IDS), crop_maps(on_gpu, IDS), atol=0.05)
