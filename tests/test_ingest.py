"""``isic ingest``: JPEG folder + label CSV of each layout -> HDF5 crops + labels.csv + summary."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from isicstack.data.crops import CropStore
from isicstack.data.io import DataError
from isicstack.ingest.config import IngestConfig
from isicstack.ingest.ingest import IMAGES, LABELS, SUMMARY, ingest

REPO = Path(__file__).resolve().parents[1]
OTHER_ISIC = Path(os.environ.get("ISIC_SHARED", REPO.parent / "shared")) / "fixtures" / "other-isic"
ISIC2019_HEADER = "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK"
ISIC2020_HEADER = ("image_name,patient_id,sex,age_approx,anatom_site_general_challenge,"
                   "diagnosis,benign_malignant,target")


def render(folder: Path, ids: list[str], seed: int = 0, size: tuple[int, int] = (48, 64),
           cast: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> None:
    """Small noisy JPEGs named ``<id>.jpg`` (height x width = ``size``), optionally tinted."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for isic_id in ids:
        img = rng.integers(60, 200, size=(*size, 3)).astype(np.float64) * np.array(cast)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{isic_id}.jpg",
                                                                    quality=95)


def generic_case(tmp_path: Path) -> tuple[Path, Path]:
    """12 labelled ids (4 positive, 6 patients) with images, 1 label without and 1 image without."""
    ids = [f"ISIC_{i:07d}" for i in range(12)]
    render(tmp_path / "img", [*ids, "ISIC_unlabelled"])
    rows = [f"{i},{int(k % 3 == 0)},P{k % 6}" for k, i in enumerate(ids)]
    labels = tmp_path / "labels.csv"
    labels.write_text("isic_id,target,patient_id\n" + "\n".join(rows) + "\nISIC_noimage,0,P9\n")
    return tmp_path / "img", labels


def test_generic_layout_round_trip_into_image_only_folds(tmp_path: Path):
    from isicstack.vision.fold_table import image_only_folds

    images, labels = generic_case(tmp_path)
    out = tmp_path / "out"
    summary = ingest(IngestConfig(images=str(images), labels=str(labels), out=str(out),
                                  size=32))
    assert summary["written"] == 12 and summary["positives"] == 4
    assert summary["images_without_label"] == ["ISIC_unlabelled"]
    assert summary["labels_without_image"] == ["ISIC_noimage"]
    assert json.loads((out / SUMMARY).read_text())["labels_without_image"] == ["ISIC_noimage"]
    with CropStore(out / IMAGES) as store:
        assert sorted(store.keys()) == [f"ISIC_{i:07d}" for i in range(12)]
        assert store.read("ISIC_0000003").shape == (32, 32, 3)
    table = pl.read_csv(out / LABELS)
    assert table.columns[:3] == ["isic_id", "target", "patient_id"] and table.height == 12
    folds = image_only_folds(out / LABELS, out / IMAGES, tmp_path / "art", n_folds=2, seed=0)
    assert folds.height == 12 and set(folds["fold"].to_list()) == {0, 1}
    assert folds.group_by("patient_id").agg(pl.col("fold").n_unique())["fold"].max() == 1


def test_isic2019_layout_target_is_mel_and_lesion_groups(tmp_path: Path):
    ids = ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002"]
    render(tmp_path / "img", ids, size=(30, 40))
    gt = tmp_path / "gt.csv"
    gt.write_text(f"{ISIC2019_HEADER}\nISIC_0000000,0.0,1.0,0,0,0,0,0,0,0\n"
                  "ISIC_0000001,1.0,0.0,0,0,0,0,0,0,0\nISIC_0000002,0.0,0.0,1.0,0,0,0,0,0,0\n")
    meta = tmp_path / "meta.csv"
    meta.write_text("image,age_approx,anatom_site_general,lesion_id,sex\n"
                    "ISIC_0000000,55,anterior torso,,female\n"
                    "ISIC_0000001,30,head/neck,BCN_0000019,male\n"
                    "ISIC_0000002,60,upper extremity,BCN_0000019,female\n")
    ingest(IngestConfig(images=str(tmp_path / "img"), labels=str(gt), metadata=str(meta),
                        layout="isic2019", out=str(tmp_path / "out"), size=0))
    table = pl.read_csv(tmp_path / "out" / LABELS).sort("isic_id")
    assert table["target"].to_list() == [0, 1, 0]
    assert table["diagnosis"].to_list() == ["NV", "MEL", "BCC"]
    assert table["patient_id"].to_list() == [None, "BCN_0000019", "BCN_0000019"]
    with CropStore(tmp_path / "out" / IMAGES) as store:
        assert store.read("ISIC_0000001").shape == (30, 40, 3)  # size=0 keeps the image


def test_isic2020_layout_target_as_is(tmp_path: Path):
    render(tmp_path / "img", ["ISIC_2637011", "ISIC_0015719"])
    csv = tmp_path / "train.csv"
    csv.write_text(f"{ISIC2020_HEADER}\nISIC_2637011,IP_7279968,male,45.0,head/neck,unknown,"
                   "benign,0\nISIC_0015719,IP_3075186,female,45.0,torso,melanoma,malignant,1\n")
    summary = ingest(IngestConfig(images=str(tmp_path / "img"), labels=str(csv),
                                  layout="isic2020", out=str(tmp_path / "out"), size=24))
    table = pl.read_csv(tmp_path / "out" / LABELS)
    assert dict(zip(table["isic_id"], table["target"], strict=True)) == {
        "ISIC_2637011": 0, "ISIC_0015719": 1}
    assert "anatom_site_general" in table.columns and summary["patients_known"] == 2


REAL_HEADS = [
    ("isic2019", ("ISIC_2019_Training_GroundTruth.csv", "ISIC_2019_Training_Metadata.csv")),
    ("isic2020", ("train.csv",))]


@pytest.mark.parametrize("layout,files", REAL_HEADS, ids=[h[0] for h in REAL_HEADS])
def test_real_csv_heads(tmp_path: Path, layout: str, files: tuple[str, ...]):
    """The real heads of both layouts: images for 20 of 300 ids. Skipped, with where it
    looked, when ../shared (or $ISIC_SHARED) does not hold them, as in a fresh clone."""
    folder = OTHER_ISIC / layout
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        pytest.skip(f"real {layout} label files not found in {folder}: {', '.join(missing)}")
    id_col = "image" if layout == "isic2019" else "image_name"
    ids = pl.read_csv(folder / files[0])[id_col].to_list()
    render(tmp_path / "img", ids[:20], size=(24, 24))
    cfg = IngestConfig(images=str(tmp_path / "img"), labels=str(folder / files[0]),
                       layout=layout, out=str(tmp_path / "out"), size=16,  # type: ignore[arg-type]
                       metadata=str(folder / files[1]) if len(files) > 1 else "")
    summary = ingest(cfg)
    assert summary["written"] == 20 and len(summary["labels_without_image"]) == len(ids) - 20
    table = pl.read_csv(tmp_path / "out" / LABELS)
    assert set(table["target"].to_list()) <= {0, 1} and table.height == 20


def test_unreadable_image_is_named_or_listed(tmp_path: Path):
    images, labels = generic_case(tmp_path)
    (images / "ISIC_0000005.jpg").write_bytes(b"not a jpeg at all")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="ISIC_0000005.jpg"):
        ingest(IngestConfig(images=str(images), labels=str(labels), out=str(out)))
    assert not (out / IMAGES).exists() and not (out / LABELS).exists()
    summary = ingest(IngestConfig(images=str(images), labels=str(labels), out=str(out),
                                  on_bad_image="list"))
    assert summary["written"] == 11 and summary["bad_images"][0]["isic_id"] == "ISIC_0000005"
    assert "ISIC_0000005" not in pl.read_csv(out / LABELS)["isic_id"].to_list()


def test_bad_labels_name_file_column_and_id(tmp_path: Path):
    images, _ = generic_case(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("isic_id,target\nISIC_0000000,0\nISIC_0000001,maybe\n")
    with pytest.raises(DataError, match=r"bad.csv.*'target'.*ISIC_0000001.*maybe"):
        ingest(IngestConfig(images=str(images), labels=str(bad), out=str(tmp_path / "o")))
    with pytest.raises(DataError, match=r"'MEL'\] missing for layout='isic2019'"):
        ingest(IngestConfig(images=str(images), labels=str(bad), layout="isic2019",
                            out=str(tmp_path / "o")))
    dup = tmp_path / "dup.csv"
    dup.write_text("isic_id,target\nISIC_0000000,0\nISIC_0000000,1\n")
    with pytest.raises(DataError, match="ISIC_0000000.*more than once"):
        ingest(IngestConfig(images=str(images), labels=str(dup), out=str(tmp_path / "o")))


def test_color_constancy_removes_a_cast(tmp_path: Path):
    render(tmp_path / "img", ["a", "b"], cast=(1.25, 1.0, 0.7))
    labels = tmp_path / "l.csv"
    labels.write_text("isic_id,target\na,0\nb,1\n")
    spread = {}
    for cc in (False, True):
        out = tmp_path / f"cc{cc}"
        ingest(IngestConfig(images=str(tmp_path / "img"), labels=str(labels), out=str(out),
                            size=32, color_constancy=cc))
        with CropStore(out / IMAGES) as store:
            means = store.read("a").reshape(-1, 3).mean(axis=0)
        spread[cc] = means.max() - means.min()
    assert spread[True] < 0.3 * spread[False]


def test_cli_flags(tmp_path: Path, capsys):
    from isicstack.pipelines.cli import main

    images, labels = generic_case(tmp_path)
    out = tmp_path / "out"
    assert main(["ingest", "--images", str(images), "--labels", str(labels), "--layout",
                 "generic", "--out", str(out), "--size", "16"]) == 0
    with CropStore(out / IMAGES) as store:
        assert store.read("ISIC_0000000").shape == (16, 16, 3)
    assert main(["ingest", "--images", str(images), "--labels", str(labels), "--out",
                 str(out), "--layout", "isic2020"]) == 1
    assert "image_name" in capsys.readouterr().err


def test_workers_give_the_same_file_and_hidden_files_are_listed(tmp_path: Path):
    images, labels = generic_case(tmp_path)
    (images / "._ISIC_0000001.jpg").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    (images / "LICENSE.txt").write_text("CC-BY-NC")
    one = ingest(IngestConfig(images=str(images), labels=str(labels), out=str(tmp_path / "a"),
                              size=24))
    two = ingest(IngestConfig(images=str(images), labels=str(labels), out=str(tmp_path / "b"),
                              size=24, workers=2))
    assert one["other_files"] == ["._ISIC_0000001.jpg", "LICENSE.txt"] and one["written"] == 12
    with CropStore(tmp_path / "a" / IMAGES) as a, CropStore(tmp_path / "b" / IMAGES) as b:
        assert a.keys() == b.keys()
        assert all(a.read_bytes(k) == b.read_bytes(k) for k in a)
    assert two["written"] == 12


LAYOUT_CSVS = {
    "isic2019": (ISIC2019_HEADER, lambda i, t, p: f"{i},{t}.0,{1 - t}.0,0,0,0,0,0,0,0"),
    "isic2020": (ISIC2020_HEADER, lambda i, t, p: f"{i},{p},male,45.0,torso,x,y,{t}"),
    "generic": ("isic_id,target,patient_id", lambda i, t, p: f"{i},{t},{p}"),
}


@pytest.mark.slow
@pytest.mark.parametrize("layout", sorted(LAYOUT_CSVS))
def test_each_layout_runs_through_the_image_stage(tmp_path: Path, layout: str):
    """JPEG folder + CSV of each layout -> ingest -> ``isic train-image`` image-only (smoke)."""
    from isicstack.pipelines.cli import main

    ids = [f"ISIC_{i:07d}" for i in range(24)]
    render(tmp_path / "img", ids, size=(40, 40))
    header, row = LAYOUT_CSVS[layout]
    csv = tmp_path / "labels.csv"
    csv.write_text(header + "\n" + "\n".join(row(i, int(k % 4 == 0), f"P{k % 8}")
                                             for k, i in enumerate(ids)) + "\n")
    out, art = tmp_path / "out", tmp_path / "art"
    assert main(["ingest", "--images", str(tmp_path / "img"), "--labels", str(csv),
                 "--layout", layout, "--out", str(out), "--size", "32"]) == 0
    assert main(["train-image", "--profile", "smoke", "fusion=false", f"artifacts={art}",
                 f"images_path={out / IMAGES}", f"labels_path={out / LABELS}", "n_folds=2",
                 "name=ingested", "predict_test=false"]) == 0
    oof = pl.read_parquet(art / "oof" / "vision_ingested.parquet")
    assert sorted(oof["isic_id"].to_list()) == ids
