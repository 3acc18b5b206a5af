"""The image config's groups (model, optim, data, runtime) and the keys that moved into them:
dotted overrides work, the old flat keys are refused on the command line (naming the new key)
and migrated in every file written with them (YAML layers, tuned file, a saved run's config)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import yaml

from isicstack.settings.build import build, default_values
from isicstack.settings.keys import field_paths, flatten, migrate, nest, with_keys
from isicstack.settings.layers import (
    CONFIG_DIR,
    ConfigError,
    load_config,
    read_run_config,
    save_config,
    to_dict,
    tuned_record,
)
from isicstack.vision.config import ImageConfig

MOVED = ImageConfig.MOVED_KEYS
GROUPS = ("model", "optim", "data", "runtime")
ADDED_SINCE = {"data.augment_on"}  # grouped fields that never had a flat key


def flat(doc: dict) -> dict:
    """A nested image config mapping written the way it was before the groups (a field added
    since has no flat key: it stays in its group, as a file written since would hold it)."""
    back = {new: old for old, new in MOVED.items()}
    leaves = flatten(doc)
    return {**{back.get(k, k): v for k, v in leaves.items() if k not in ADDED_SINCE},
            **nest({k: v for k, v in leaves.items() if k in ADDED_SINCE})}


def flat_layers(src: Path, dst: Path) -> Path:
    """``src``'s configs/image.yaml with every layer rewritten with the flat keys, and a
    ``base`` holding every default (as a user's file from before the groups did)."""
    doc = yaml.safe_load(src.read_text())
    dst.mkdir(parents=True, exist_ok=True)
    out = {"base": flat(default_values(ImageConfig)),
           "profiles": {n: flat(p) for n, p in doc["profiles"].items()}}
    (dst / "image.yaml").write_text(yaml.safe_dump(out, sort_keys=False))
    return dst


def test_mapping_covers_every_moved_field():
    """Every old key names an existing dotted field, no two old keys one field, every field of
    a group has its old key, and no old key is still a field (the mapping cannot drift)."""
    paths = set(field_paths(ImageConfig))
    assert set(MOVED.values()) <= paths, set(MOVED.values()) - paths
    assert len(set(MOVED.values())) == len(MOVED)
    grouped = {p for p in paths if p.split(".")[0] in GROUPS}
    assert set(MOVED.values()) == grouped - ADDED_SINCE and grouped >= ADDED_SINCE
    assert not set(MOVED) & paths
    assert all(new.split(".", 1)[1] == old for old, new in MOVED.items() if old != "model_name")


def test_dotted_override_and_old_flat_override_refused():
    cfg = load_config(ImageConfig, "image", "smoke", ["model.name=resnet34", "optim.steps=9"])
    assert (cfg.model.name, cfg.optim.steps, cfg.model.image_size) == ("resnet34", 9, 32)
    with pytest.raises(ConfigError, match="model_name is now model.name"):
        load_config(ImageConfig, "image", overrides=["model_name=resnet34"])
    with pytest.raises(ConfigError, match="steps is now optim.steps.*batch_size is now "
                                          "data.batch_size"):
        load_config(ImageConfig, "image", overrides=["steps=4", "batch_size=8"])


def test_cli_refuses_a_flat_key_with_its_new_name(capsys):
    from isicstack.pipelines.cli import main

    assert main(["train-image", "model_name=resnet34", "--print-config"]) == 2
    assert "model_name is now model.name" in capsys.readouterr().err


def test_flat_yaml_layers_are_migrated_with_one_warning(tmp_path: Path, caplog):
    """A user's configs/image.yaml written with the flat keys resolves, under every profile,
    to what the shipped grouped file resolves to; one warning names the file."""
    cdir = flat_layers(Path(str(CONFIG_DIR)) / "image.yaml", tmp_path / "cfgs")
    with caplog.at_level(logging.WARNING):
        for profile in ("default", "smoke", "full", "full_cpu", "gpu", "real_dev"):
            old = load_config(ImageConfig, "image", profile, use_tuned=False, config_dir=cdir)
            new = load_config(ImageConfig, "image", profile, use_tuned=False,
                              config_dir=CONFIG_DIR)
            assert old == new, profile
    warned = [r.getMessage() for r in caplog.records if "written with flat keys" in r.getMessage()]
    assert len(warned) == 1 and str(cdir / "image.yaml") in warned[0]  # once per process
    assert "model_name -> model.name; " in warned[0] and "optim.{steps, " in warned[0]


def test_flat_tuned_file_is_migrated(tmp_path: Path, caplog):
    cdir = tmp_path / "cfgs"
    (cdir / "tuned").mkdir(parents=True)
    shutil.copy(Path(str(CONFIG_DIR)) / "image.yaml", cdir / "image.yaml")
    (cdir / "tuned" / "image.yaml").write_text(yaml.safe_dump(
        {"lr": 0.005, "steps": 77, "data": {"augment": "none"}, "tuned_by": {"study": "s"}}))
    with caplog.at_level(logging.WARNING):
        cfg = load_config(ImageConfig, "image", "smoke", config_dir=cdir)
    assert (cfg.optim.lr, cfg.optim.steps, cfg.data.augment) == (0.005, 77, "none")
    assert cfg.optim.weight_decay == 0.01  # the layers below the tuned file are kept
    assert f"{cdir / 'tuned' / 'image.yaml'}: written with flat keys" in caplog.text
    assert tuned_record(cfg)["keys"] == ["data.augment", "optim.lr", "optim.steps"]
    assert load_config(ImageConfig, "image", "smoke", ["optim.lr=0.1"],
                       config_dir=cdir).optim.lr == 0.1  # overrides still win


def test_saved_run_with_flat_keys_reads_as_the_grouped_config(tmp_path: Path, caplog):
    """A run's config.yaml from before the groups (prediction, Grad-CAM, the app and the
    Kaggle package read it) is the same config as the grouped one."""
    cfg = load_config(ImageConfig, "image", "full", ["name=x", "optim.lr=0.002", "folds=[1]"])
    new_dir, old_dir = tmp_path / "new", tmp_path / "old"
    save_config(cfg, new_dir / "config.yaml")
    old_dir.mkdir()
    (old_dir / "config.yaml").write_text(yaml.safe_dump(flat(to_dict(cfg))))
    assert "model_name" in (old_dir / "config.yaml").read_text()
    with caplog.at_level(logging.WARNING):
        old = read_run_config(ImageConfig, old_dir)
    assert old == read_run_config(ImageConfig, new_dir) == cfg
    assert f"{old_dir / 'config.yaml'}: written with flat keys" in caplog.text
    assert "model_name -> model.name" in caplog.text and "runtime.{" in caplog.text


def test_a_key_set_both_ways_is_an_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="steps and optim.steps both set"):
        migrate({"steps": 3, "optim": {"steps": 4}}, MOVED, "x.yaml")
    with pytest.raises(ConfigError, match="model_name is now model.name"):
        build(ImageConfig, {"model_name": "resnet34"})  # an unmigrated mapping names the key


def test_with_keys_copies_groups():
    base = ImageConfig()
    changed = with_keys(base, {"optim.lr": 0.5, "name": "x", "runtime.cpu_threads": 2})
    assert (changed.optim.lr, changed.name, changed.runtime.cpu_threads) == (0.5, "x", 2)
    assert (base.optim.lr, base.name, base.runtime.cpu_threads) == (1e-3, "", 0)
    assert changed.data is base.data  # untouched groups are shared, never changed in place


def test_mlflow_params_are_the_dotted_keys(tmp_path: Path):
    """The ledger's params of an image run are its config's dotted keys (settings.keys.flatten)."""
    from isicstack.settings.keys import flatten as params

    keys = set(params(to_dict(ImageConfig())))
    assert {"model.name", "optim.lr", "data.batch_size", "runtime.precision", "name"} <= keys
    assert keys == set(field_paths(ImageConfig))
