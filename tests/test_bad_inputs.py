"""Bad input, named: each row of the README's reliability table is run here through ``isic``.

Every case prepares one bad input on a copy of the synthetic mini-ISIC, runs the CLI, and checks
the exit code and that the message the README shows is what the user sees. The README table is
rendered from ``CASES`` (``python tests/test_bad_inputs.py`` rewrites it), so the two agree.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import polars as pl
import pytest

from isicstack.data.io import write_csv
from isicstack.ledger.result import read_result
from isicstack.pipelines.cli import main

REPO = Path(__file__).resolve().parents[1]
TEST_FILES = ("test-metadata.csv", "test-image.hdf5", "sample_submission.csv")


@dataclass
class Env:
    """Paths of one case: a data folder, a test folder and artifacts holding a trained LightGBM."""

    data: Path
    test: Path
    art: Path
    tmp: Path
    mini: Path
    sub: dict[str, str] = field(default_factory=dict)  # {isic_id} / {file} of a bad crop

    def train(self, fn: Callable[[pl.DataFrame], pl.DataFrame]) -> None:
        path = self.data / "train-metadata.csv"
        write_csv(fn(pl.read_csv(path, infer_schema=False)), path)

    def test_meta(self, fn: Callable[[pl.DataFrame], pl.DataFrame]) -> None:
        path = self.test / "test-metadata.csv"
        write_csv(fn(pl.read_csv(path, infer_schema=False)), path)

    def crops(self, path: Path, how: str) -> Path:
        """Break the first crop of ``path`` (corrupt / missing) or the whole file (truncate)."""
        if not path.is_file():
            shutil.copy2(self.mini / path.name, path)
        with h5py.File(path, "r+") as f:
            isic_id = sorted(f.keys())[0]
            if how == "corrupt":
                del f[isic_id]
                f.create_dataset(isic_id, data=np.bytes_(b"\xff\xd8 not a jpeg \x00\x01"))
            elif how == "missing":
                del f[isic_id]
        if how == "truncate":
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        self.sub = {"isic_id": isic_id, "file": str(path)}
        return path

    def image(self, *extra: str) -> list[str]:
        return ["train-image", "--profile", "smoke", f"data_dir={self.data}",
                f"artifacts={self.art}", "fusion=false", "name=check", "folds=[0]",
                "predict_test=false", *extra]

    def folds(self, *extra: str) -> list[str]:
        return ["folds", f"data_dir={self.data}", f"artifacts={self.art}", *extra]

    def tabular(self, *extra: str) -> list[str]:
        return ["train-tabular", "--profile", "smoke", f"data_dir={self.data}",
                f"artifacts={self.art}", "models.xgb.enabled=false", *extra]

    def predict(self, *extra: str) -> list[str]:
        return ["predict", f"data_dir={self.test}", f"artifacts={self.art}",
                f"out={self.tmp / 'submission.csv'}", "stacker=", "fallback=lgbm",
                "cpu_threads=1", *extra]


@dataclass(frozen=True)
class Case:
    what: str  # the bad input (README)
    command: str  # what the user runs (README)
    rc: int  # exit status
    sees: str  # printed or logged, verbatim (README)
    run: Callable[[Env], list[str]]


def _set(col: str, value: str | None, row: int = 5) -> Callable[[pl.DataFrame], pl.DataFrame]:
    return lambda d: d.with_columns(pl.when(pl.int_range(pl.len()) == row).then(pl.lit(value))
                                    .otherwise(pl.col(col)).alias(col))


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _unlink(path: Path) -> None:
    path.unlink()


CASES = [
    Case("no `train-metadata.csv` in DATA_DIR", "isic folds", 1,
         "train-metadata.csv: metadata file not found",
         lambda e: (_unlink(e.data / "train-metadata.csv"), e.folds())[1]),
    Case("empty `train-metadata.csv` (0 bytes)", "isic folds", 1, "file is empty",
         lambda e: (_write(e.data / "train-metadata.csv", ""), e.folds())[1]),
    Case("header but no rows", "isic folds", 1, "file has a header but no rows",
         lambda e: (e.train(lambda d: d.head(0)), e.folds())[1]),
    Case("a required column missing", "isic folds", 1,
         "missing required column(s) for split='train': tbp_lv_areaMM2",
         lambda e: (e.train(lambda d: d.drop("tbp_lv_areaMM2")), e.folds())[1]),
    Case("extra columns", "isic train-tabular", 0, "keeping 1 unknown column(s): my_note",
         lambda e: (e.train(lambda d: d.with_columns(my_note=pl.lit("x"))),
                    main(e.folds()), e.tabular("models.lgbm.num_rounds=5"))[2]),
    Case("text in a numeric column", "isic folds", 1,
         "column 'tbp_lv_x' row 7: value 'abc' is not Float64",
         lambda e: (e.train(_set("tbp_lv_x", "abc")), e.folds())[1]),
    Case("a duplicated `isic_id`", "isic folds", 1, "column 'isic_id' has 1 duplicated id(s)",
         lambda e: (e.train(lambda d: pl.concat([d, d.head(1)])), e.folds())[1]),
    Case("an empty `isic_id`", "isic folds", 1, "column 'isic_id' has 1 empty value(s)",
         lambda e: (e.train(_set("isic_id", None)), e.folds())[1]),
    Case("an empty `patient_id`", "isic folds", 1, "column 'patient_id' has empty values",
         lambda e: (e.train(_set("patient_id", None)), e.folds())[1]),
    Case("`target` other than 0/1", "isic folds", 1, "column 'target' must be 0 or 1, found 2",
         lambda e: (e.train(_set("target", "2")), e.folds())[1]),
    Case("the test file given as train file", "isic folds", 1,
         "missing required column(s) for split='train': target",
         lambda e: (shutil.copy2(e.test / "test-metadata.csv", e.data / "train-metadata.csv"),
                    e.folds())[1]),
    Case("folds of other data in the same ARTIFACTS", "isic folds", 1,
         "existing folds were made for",
         lambda e: (main(e.folds()), e.train(lambda d: d.head(800)), e.folds())[2]),
    Case("a stage run before `folds`", "isic train-tabular", 1,
         "no folds yet; run `isic folds` (or `make folds`) first",
         lambda e: (shutil.rmtree(e.art), e.tabular())[1]),
    Case("unknown config key", "isic folds nope=1", 2,
         "unknown config key(s) nope for FoldsConfig; known:",
         lambda e: e.folds("nope=1")),
    Case("wrong config type", "isic folds n_folds=x", 2,
         "config key 'n_folds': expected an integer, got 'x'",
         lambda e: e.folds("n_folds=x")),
    Case("unknown profile", "isic folds --profile huge", 2, "unknown profile 'huge'",
         lambda e: ["folds", "--profile", "huge"]),
    Case("an override without `=`", "isic folds n_folds", 2,
         "override 'n_folds' is not of the form key=value", lambda e: e.folds("n_folds")),
    Case("unknown feature group", "isic train-tabular features.groups=[leison]", 1,
         "unknown feature group(s) ['leison']", lambda e: e.tabular("features.groups=[leison]")),
    Case("no tabular OOF files to stack", "isic stack", 1, "no OOF predictions to stack",
         lambda e: (shutil.rmtree(e.art / "oof"), ["stack", f"data_dir={e.data}",
                                                   f"artifacts={e.art}"])[1]),
    Case("empty test file (header only)", "isic predict", 1, "file has a header but no rows",
         lambda e: (e.test_meta(lambda d: d.head(0)), e.predict())[1]),
    Case("the v1 test file (`tbp_lv_stdLExt` = `tbp_lv_Lext`)", "isic predict", 0,
         "tbp_lv_stdLExt equals tbp_lv_Lext on every row: this is the first release's bug",
         lambda e: (e.test_meta(lambda d: d.with_columns(tbp_lv_stdLExt=pl.col("tbp_lv_Lext"))),
                    e.predict())[1]),
    Case("a test row with a category never seen in training", "isic predict", 0,
         "submission: wrote",
         lambda e: (e.test_meta(_set("attribution", "Hospital never seen", 0)), e.predict())[1]),
    Case("`sample_submission.csv` ids differ from the test file", "isic predict", 1,
         "the two files come from different test sets",
         lambda e: (_write(e.test / "sample_submission.csv", "isic_id,target\nISIC_0000000,0.3\n"),
                    e.predict())[1]),
    Case("a saved model file missing", "isic predict", 1,
         "not found; copy the whole run folder or rerun the training stage",
         lambda e: (_unlink(e.art / "runs" / "lgbm" / "features.json"), e.predict())[1]),
    Case("a corrupt `stacker.json`", "isic predict stacker=stack", 1, "not a valid stacker",
         lambda e: ((e.art / "runs" / "stack").mkdir(parents=True),
                    _write(e.art / "runs" / "stack" / "stacker.json", "{oops"),
                    e.predict("stacker=stack"))[2]),
    Case("invalid YAML in the user's config folder", "ISIC_CONFIG_DIR=<dir> isic folds", 2,
         "not valid YAML", lambda e: ["folds"]),
    Case("`ISIC_CONFIG_DIR` that is not a folder", "ISIC_CONFIG_DIR=<nope> isic folds", 2,
         "not a folder", lambda e: ["folds"]),
    Case("a corrupt JPEG in `train-image.hdf5`", "isic train-image", 1,
         "{file}: crop '{isic_id}' is not a decodable JPEG",
         lambda e: (e.crops(e.data / "train-image.hdf5", "corrupt"), e.image())[1]),
    Case("a corrupt JPEG, with `data.on_bad_image=skip`",
         "isic train-image data.on_bad_image=skip", 0,
         "skipping crop: {file}: crop '{isic_id}' is not a decodable JPEG",
         lambda e: (e.crops(e.data / "train-image.hdf5", "corrupt"),
                    e.image("data.on_bad_image=skip"))[1]),
    Case("a corrupt JPEG, crops streamed", "isic train-image data.data_mode=stream", 1,
         "{file}: crop '{isic_id}' is not a decodable JPEG",
         lambda e: (e.crops(e.data / "train-image.hdf5", "corrupt"),
                    e.image("data.data_mode=stream"))[1]),
    Case("a corrupt JPEG, streamed, with `data.on_bad_image=skip`",
         "isic train-image data.data_mode=stream data.on_bad_image=skip", 0,
         "skipping crop: {file}: crop '{isic_id}' is not a decodable JPEG",
         lambda e: (e.crops(e.data / "train-image.hdf5", "corrupt"),
                    e.image("data.data_mode=stream", "data.on_bad_image=skip"))[1]),
    Case("an `isic_id` missing from `train-image.hdf5`", "isic train-image", 1,
         "{file}: 1 train row(s) have no crop, e.g. '{isic_id}'",
         lambda e: (e.crops(e.data / "train-image.hdf5", "missing"), e.image())[1]),
    Case("a truncated `train-image.hdf5`", "isic train-image", 1,
         "{file}: not a readable HDF5 file",
         lambda e: (e.crops(e.data / "train-image.hdf5", "truncate"), e.image())[1]),
    Case("a corrupt JPEG in `test-image.hdf5` (image model)",
         "isic predict fallback=vision_imgonly", 1,
         "{file}: crop '{isic_id}' is not a decodable JPEG",
         lambda e: (e.crops(e.test / "test-image.hdf5", "corrupt"),
                    e.predict("fallback=vision_imgonly"))[1]),
    Case("a corrupt JPEG given to `predict-images`", "isic predict-images images=<hdf5>", 1,
         "{file}: crop '{isic_id}' is not a decodable JPEG",
         lambda e: (e.crops(e.test / "test-image.hdf5", "corrupt"),
                    ["predict-images", f"artifacts={e.art}", f"images={e.test / 'test-image.hdf5'}",
                     f"out={e.tmp / 'scores.csv'}", "cpu_threads=1"])[1]),
    Case("CatBoost enabled but not installed", "isic train-tabular models.cat.enabled=true", 2,
         "pip install 'isicstack[catboost]'",
         lambda e: e.tabular("models.cat.enabled=true", "models.lgbm.enabled=false")),
]


@pytest.fixture(scope="module")
def trained(mini_isic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folds + a 20-round LightGBM on the mini-ISIC (what predict and stack read)."""
    art = tmp_path_factory.mktemp("bad_inputs_art")
    common = [f"data_dir={mini_isic}", f"artifacts={art}"]
    assert main(["folds", *common]) == 0
    assert main(["train-tabular", "--profile", "smoke", *common, "bags=1", "threads=1",
                 "models.xgb.enabled=false", "models.lgbm.num_rounds=20"]) == 0
    assert main(["train-image", "--profile", "smoke", *common, "fusion=false", "name=imgonly",
                 "predict_test=false"]) == 0  # what predict / predict-images of a crop read
    return art


@pytest.fixture()
def env(mini_isic: Path, trained: Path, tmp_path: Path, monkeypatch) -> Env:
    data, test = tmp_path / "data", tmp_path / "test"
    data.mkdir()
    test.mkdir()
    shutil.copy2(mini_isic / "train-metadata.csv", data / "train-metadata.csv")
    for name in TEST_FILES:
        shutil.copy2(mini_isic / name, test / name)
    shutil.copytree(trained, tmp_path / "art")
    monkeypatch.delenv("ISIC_CONFIG_DIR", raising=False)
    return Env(data, test, tmp_path / "art", tmp_path, mini_isic)


@pytest.mark.parametrize("case", CASES, ids=[re.sub(r"\W+", "-", c.what)[:40] for c in CASES])
def test_bad_input(case: Case, env: Env, capsys, caplog, monkeypatch):
    if "ISIC_CONFIG_DIR=<dir>" in case.command:
        (env.tmp / "cfg").mkdir()
        (env.tmp / "cfg" / "folds.yaml").write_text("base: {n_folds: [3\n")
        monkeypatch.setenv("ISIC_CONFIG_DIR", str(env.tmp / "cfg"))
    elif "ISIC_CONFIG_DIR=<nope>" in case.command:
        monkeypatch.setenv("ISIC_CONFIG_DIR", str(env.tmp / "nope"))
    elif "catboost" in case.sees:
        monkeypatch.setitem(sys.modules, "catboost", None)  # as if the extra were not installed
    with caplog.at_level("INFO"):
        rc = main(case.run(env))
    seen = capsys.readouterr().err + caplog.text
    assert rc == case.rc, seen[-3000:]
    assert case.sees.format(**env.sub) in seen, seen[-3000:]
    if rc:  # one line, no traceback, and the failed run wrote no output
        assert "Traceback" not in seen and not (env.tmp / "submission.csv").exists()
        assert not (env.tmp / "scores.csv").exists()
    if "data.on_bad_image=skip" in case.command:  # the skipped crop is listed in the run's metrics
        details = read_result(env.art / "runs" / "vision_check").details
        assert details["bad_images"] == [env.sub["isic_id"]]
        assert details["data_mode"] == ("stream" if "data.data_mode=stream" in case.command
                                        else "memory")


def _code(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def render_table() -> str:
    """The README's reliability table, one row per case."""
    rows = ["| # | bad input | command | exit | what the user sees |", "|---|---|---|---|---|"]
    for i, c in enumerate(CASES, 1):
        sees = c.sees.format(isic_id="<isic_id>", file="<file>")
        rows.append(f"| {i} | {c.what} | {_code(c.command)} | {c.rc} | {_code(sees)} |")
    return "\n".join(rows) + "\n"


BLOCK = re.compile(r"(<!-- table:bad-inputs -->\n).*?(<!-- /table:bad-inputs -->)", re.S)


def test_readme_table_lists_every_case():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    m = BLOCK.search(readme)
    assert m, "README.md has no <!-- table:bad-inputs --> block"
    assert len(CASES) >= 25
    assert m.group(0) == m.group(1) + render_table() + m.group(2), \
        "run `python tests/test_bad_inputs.py` to rewrite the README table"


if __name__ == "__main__":  # rewrite the README table from CASES
    path = REPO / "README.md"
    text = path.read_text(encoding="utf-8")
    path.write_text(BLOCK.sub(lambda m: m.group(1) + render_table() + m.group(2), text))
