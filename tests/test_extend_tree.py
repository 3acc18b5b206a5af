"""Extending is one place, tried as a maintainer would: in a copy of the package, add a GBDT
library, a backbone option, a run of ``make all`` and an evaluating command, each as its code
file plus its config entry and nothing else, and use each through the ``isic`` command line.

The README's "Extending" section lists exactly these edits; if adding one of them starts to need
another file (a table, a list, a YAML), this test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COPY_SKIP = shutil.ignore_patterns(".git", ".venv", "artifacts", "datasets", "build", "dist",
                                   "fixtures", "__pycache__", "*.egg-info", ".*_cache", "tuned")

GBDT_CLASS = '''

@register_model
class MeanModel(GBDT):
    """The training rows' positive rate for every row: a library in one class."""

    kind, suffix = "mean", ".mean.json"
    space = {"shrink": {"type": "float", "low": 0.0, "high": 0.5}}

    def fit(self, X, y, names, categorical, seed, prepared=None):
        self.model = float(np.mean(y)) * (1 - self.params.get("shrink", 0.0))
        return self

    def predict(self, X):
        return np.full(len(X), self.model)

    def _save(self, path):
        path.write_text(str(self.model))

    @classmethod
    def load(cls, path):
        model = cls({}, 0)
        model.model = float(Path(path).read_text())
        return model
'''
GBDT_DEFAULT = ('        "mean": ModelSpec("mean", enabled=False, num_rounds=1, '
                'params={"shrink": 0.0}),\n        "cat": ModelSpec(')
HEAD_FIELD = '''    drop_rate: float = 0.0         # dropout before the classifier
    head_hidden: int = 0           # width of a hidden ReLU layer in the head (0 = linear head)
'''
HEAD_CODE = '''        hidden = cfg.model.head_hidden
        self.head = (nn.Sequential(nn.Dropout(cfg.model.drop_rate), nn.Linear(dim, hidden),
                                   nn.ReLU(), nn.Linear(hidden, 1)) if hidden else
                     nn.Sequential(nn.Dropout(cfg.model.drop_rate), nn.Linear(dim, 1)))
'''
COMMAND_MODULE = '''"""``isic count-oof``: how many OOF files there are, and their rows."""

import polars as pl

from isicstack.data.io import write_json
from isicstack.data.layout import oof_path
from isicstack.data.predictions import discover
from isicstack.evaluation.config import CountOofConfig


def run(cfg: CountOofConfig) -> dict[str, int]:
    names = discover(cfg.artifacts, include_stack=True, include_parts=True)
    rows = {n: pl.read_parquet(oof_path(cfg.artifacts, n)).height for n in names}
    write_json(rows, cfg.out)
    return rows
'''
COMMAND_CONFIG = '''

@dataclass
class CountOofConfig:
    """Config of ``isic count-oof``."""

    COMMAND: ClassVar[Command] = Command(
        "count-oof", "isicstack.evaluation.count_oof", "count the OOF files and their rows")

    artifacts: str = "artifacts"  # oof/ is read here
    out: str = "count.json"  # where the counts go
'''
RUN_ENTRY = '''  stack-rank:  # the stack by rank mean alone
    stage: stack
    args: [method=rank_mean, submission=false]
'''


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{path}: {old!r} not found once"
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the package with one of each extension added, and nothing else edited."""
    root = tmp_path_factory.mktemp("extended")
    pkg = root / "isicstack"
    shutil.copytree(REPO, pkg, ignore=COPY_SKIP)
    # a GBDT library: one class in tabular/models.py + its default entry in tabular/config.py
    with (pkg / "tabular" / "models.py").open("a", encoding="utf-8") as f:
        f.write(GBDT_CLASS)
    _edit(pkg / "tabular" / "config.py", '        "cat": ModelSpec(', GBDT_DEFAULT)
    # a backbone option: its field in vision/config.py + the code that reads it in vision/model.py
    _edit(pkg / "vision" / "config.py", HEAD_FIELD.splitlines(keepends=True)[0], HEAD_FIELD)
    _edit(pkg / "vision" / "model.py", "        self.head = nn.Sequential(nn.Dropout("
          "cfg.model.drop_rate), nn.Linear(dim, 1))\n", HEAD_CODE)
    # an evaluating command: its module + its config class (which declares the command)
    (pkg / "evaluation" / "count_oof.py").write_text(COMMAND_MODULE, encoding="utf-8")
    with (pkg / "evaluation" / "config.py").open("a", encoding="utf-8") as f:
        f.write(COMMAND_CONFIG)
    cfg = pkg / "evaluation" / "config.py"
    if "ClassVar" not in cfg.read_text(encoding="utf-8").split("@dataclass")[0]:
        _edit(cfg, "from typing import ", "from typing import ClassVar, ")
    # a run of make all: one entry in the chain (a user's chain.yaml here)
    user = root / "configs"
    user.mkdir()
    chain = (REPO / "configs" / "chain.yaml").read_text(encoding="utf-8")
    (user / "chain.yaml").write_text(chain.rstrip("\n") + "\n" + RUN_ENTRY, encoding="utf-8")
    return root


def isic(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``isic`` of the extended copy (its package first on the path), in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "ISIC_TRACKING": "none",
           "ISIC_CONFIG_DIR": str(tree / "configs"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "isicstack.pipelines.cli", *args], cwd=tree,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_the_copy_is_what_runs(tree: Path):
    out = isic(tree, "--help").stdout
    assert "count-oof" in out  # only the copy has it: the tests' own package is not used


def test_a_gbdt_library_is_one_class_and_its_default(tree: Path, mini_isic: Path,
                                                     mini_artifacts: Path, tmp_path: Path):
    art = tmp_path / "art"
    shutil.copytree(mini_artifacts, art)
    isic(tree, "train-tabular", f"data_dir={mini_isic}", f"artifacts={art}", "bags=1",
         "models.lgbm.enabled=false", "models.xgb.enabled=false", "models.mean.enabled=true",
         "models.mean.params.shrink=0.5")
    metrics = json.loads((art / "runs" / "mean" / "metrics.json").read_text())
    assert "mean" in json.dumps(metrics) and (art / "oof" / "mean.parquet").is_file()
    assert sorted((art / "runs" / "mean" / "models").iterdir())[0].name.endswith(".mean.json")
    help_text = isic(tree, "train-tabular", "--help").stdout
    assert "models.mean.params" in help_text


def test_a_backbone_option_is_its_field_and_its_code(tree: Path):
    help_text = isic(tree, "train-image", "--help").stdout
    assert "model.head_hidden (int, 0): width of a hidden ReLU layer in the head" in help_text
    code = ("import torch\nfrom isicstack.settings.layers import load_config\n"
            "from isicstack.vision.config import ImageConfig\n"
            "from isicstack.vision.model import build_model\n"
            "cfg = load_config(ImageConfig, 'image', 'smoke', ['model.head_hidden=8'])\n"
            "net = build_model(cfg, 0, False)\n"
            "print(sum(isinstance(m, torch.nn.Linear) for m in net.head),"
            " tuple(net(torch.zeros(2, 3, 32, 32)).shape))\n")
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1",
           "ISIC_CONFIG_DIR": str(tree / "configs")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["2", "(2,)"]


def test_a_run_is_one_chain_entry(tree: Path, tmp_path: Path):
    out = isic(tree, "chain", "stack-rank", "--dry-run", "--artifacts", str(tmp_path)).stdout
    assert "stack" in out and "method=rank_mean" in out


def test_an_evaluating_command_is_its_module_and_its_config(tree: Path, mini_artifacts: Path,
                                                           tmp_path: Path):
    help_text = isic(tree, "count-oof", "--help").stdout
    assert "out (str, \"count.json\"): where the counts go" in help_text
    art = tmp_path / "art"
    (art / "oof").mkdir(parents=True)
    folds = mini_artifacts / "folds.parquet"
    import polars as pl

    pl.read_parquet(folds).select("isic_id", "fold").with_columns(pred=pl.lit(0.5)).write_parquet(
        art / "oof" / "demo.parquet")
    isic(tree, "count-oof", f"artifacts={art}", f"out={tmp_path / 'count.json'}")
    counts = json.loads((tmp_path / "count.json").read_text())
    assert counts == {"demo": pl.read_parquet(folds).height}
