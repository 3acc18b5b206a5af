"""The image model: built by one factory from the config it then reads (no second set of
defaults), and a fused model that starts as the tabular ranking."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
import torch
from vision_fixtures import tiny_model

from isicstack.vision.config import ImageConfig
from isicstack.vision.model import ImageClassifier

REPO = Path(__file__).resolve().parents[1]


def config_keys() -> set[str]:
    """Every field name of the image config, top level and groups (``name``, ``lr``, ...)."""
    groups = [type(v) for v in vars(ImageConfig()).values() if dataclasses.is_dataclass(v)]
    return {f.name for c in (ImageConfig, *groups) for f in dataclasses.fields(c)}


def test_image_model_reads_its_config():
    """``ImageClassifier`` gets its backbone built and reads the config it is given: a
    constructor default or a copied config field could drift from the dataclass's (the model
    name once had three defaults)."""
    params = inspect.signature(ImageClassifier.__init__).parameters
    assert [n for n, p in params.items() if p.default is not inspect.Parameter.empty] == []
    keys = config_keys()
    assert {"name", "lr", "drop_rate", "tta_flip", "pos_weight"} <= keys
    # channels_last: runtime.channels_last resolved ("auto": on a GPU or with bf16)
    assert set(params) & keys <= {"channels_last"}


def test_model_name_is_read_in_one_place():
    """The backbone is the one ``model.name`` names, made by ``build_model`` alone: training,
    prediction, Grad-CAM and the app all build through it."""
    assert tiny_model().backbone.pretrained_cfg["architecture"] == "test_resnet"
    dirs = [REPO, *(p for p in REPO.iterdir() if (p / "__init__.py").is_file())]
    built = {f.relative_to(REPO).as_posix() for d in dirs for f in d.glob("*.py")
             if re.search(r"\b(create_backbone|ImageClassifier)\(", f.read_text())}
    assert built == {"vision/backbone.py", "vision/model.py"}  # defined; built by build_model


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_untrained_fusion_model_ranks_like_the_tabular_score(seed: int):
    """Before any step, the fused output is monotone in the tabular logit, whatever the init."""
    torch.manual_seed(seed)
    model = tiny_model(n_tab=2).eval()
    z = torch.linspace(-3, 3, 7)
    tab = torch.stack([z, torch.randn(7)], dim=1)
    with torch.no_grad():
        out = model(torch.randn(7, 3, 32, 32), tab)
    assert torch.all(out[1:] > out[:-1])
