"""Typed configs: profiles, overrides, unknown keys and wrong types are named errors."""

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from isicstack.settings.layers import ConfigError, load_config, parse_overrides, save_config


@dataclass
class Inner:
    lr: float = 0.1
    depth: int = 3


@dataclass
class Cfg:
    name: str = "x"
    profile: str = "default"
    n: int = 1
    flag: bool = False
    ratio: float | None = None
    groups: list[str] = field(default_factory=lambda: ["a"])
    inner: Inner = field(default_factory=Inner)
    params: dict[str, float] = field(default_factory=dict)


@pytest.fixture()
def cdir(tmp_path: Path) -> Path:
    (tmp_path / "stage.yaml").write_text(yaml.safe_dump({
        "base": {"n": 5, "inner": {"lr": 0.05}},
        "profiles": {"smoke": {"n": 2, "groups": ["b", "c"]}},
    }))
    return tmp_path


def test_layers(cdir: Path):
    cfg = load_config(Cfg, "stage", config_dir=cdir)
    assert (cfg.n, cfg.inner.lr, cfg.inner.depth, cfg.profile) == (5, 0.05, 3, "default")
    cfg = load_config(Cfg, "stage", "smoke", ["inner.depth=7", "flag=true", "ratio=0.5"],
                      config_dir=cdir)
    got = (cfg.n, cfg.groups, cfg.inner.depth, cfg.flag, cfg.ratio)
    assert got == (2, ["b", "c"], 7, True, 0.5)
    assert cfg.profile == "smoke"


def test_tuned_file_applies_before_overrides(cdir: Path):
    (cdir / "tuned").mkdir()
    (cdir / "tuned" / "stage.yaml").write_text("n: 9\nparams: {lr: 0.3}\n")
    assert load_config(Cfg, "stage", config_dir=cdir).params == {"lr": 0.3}
    assert load_config(Cfg, "stage", overrides=["n=4"], config_dir=cdir).n == 4
    assert load_config(Cfg, "stage", config_dir=cdir, use_tuned=False).n == 5


@pytest.mark.parametrize("override, match", [
    ("bogus=1", "bogus"),
    ("inner.bogus=1", "inner.bogus"),
    ("n=abc", "'n'.*integer"),
    ("flag=3", "'flag'.*true/false"),
    ("inner.lr=fast", "'inner.lr'.*number"),
    ("groups=3", "'groups'.*list"),
    ("novalue", "key=value"),
])
def test_errors_name_the_key(cdir: Path, override: str, match: str):
    with pytest.raises(ConfigError, match=match):
        load_config(Cfg, "stage", overrides=[override], config_dir=cdir)


def test_unknown_profile(cdir: Path):
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_config(Cfg, "stage", "huge", config_dir=cdir)


def test_parse_overrides_nested():
    assert parse_overrides(["a.b=1", "a.c=x", "d=[1, 2]"]) == {"a": {"b": 1, "c": "x"}, "d": [1, 2]}


def test_save_round_trip(cdir: Path, tmp_path: Path):
    cfg = load_config(Cfg, "stage", "smoke", config_dir=cdir)
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    again = load_config(Cfg, "none", overrides=[], config_dir=tmp_path / "empty")
    assert again.n == 1  # no yaml: dataclass defaults
    saved = yaml.safe_load(path.read_text())
    assert saved["groups"] == ["b", "c"] and saved["inner"]["lr"] == 0.05


def test_every_shipped_config_resolves(monkeypatch):
    """Every shipped configs/*.yaml belongs to a stage, and resolves into that stage's config
    dataclass under every profile (a profile is global: `make all PROFILE=full` passes it to
    every stage). An import error of a stage module fails here, it is not skipped."""
    import importlib

    from isicstack.pipelines.cli import STAGES
    from isicstack.settings.layers import CONFIG_DIR, known_profiles

    monkeypatch.delenv("ISIC_CONFIG_DIR", raising=False)
    shipped = {p.name[:-5] for p in CONFIG_DIR.iterdir() if p.name.endswith(".yaml")}
    assert shipped - {"chain"} == {spec.yaml for spec in STAGES.values()}  # chain: test_chain
    profiles = known_profiles(CONFIG_DIR)
    assert {"default", "smoke", "full"} <= set(profiles)
    checked = set()
    for stage, spec in STAGES.items():
        cls = getattr(importlib.import_module(spec.module), spec.config_class)
        for profile in profiles:
            cfg = load_config(cls, spec.yaml, profile, use_tuned=False, config_dir=CONFIG_DIR)
            assert isinstance(cfg, cls)
            if hasattr(cfg, "profile"):
                assert cfg.profile == profile
        checked.add(stage)
    assert checked == {"synth", "folds", "train-tabular", "train-image", "stack", "predict",
                       "kaggle-package", "report", "tune", "evaluate", "predict-images",
                       "ingest", "explain", "app", "calibrate", "subgroups", "loco",
                       "runs"}


def test_dataclass_defaults_are_the_base_profile(monkeypatch, tmp_path: Path):
    """One source of defaults: a stage run with no YAML at all (a config folder without it)
    resolves exactly as the shipped `base` profile, so the two cannot drift apart."""
    import dataclasses
    import importlib

    from isicstack.pipelines.cli import STAGES
    from isicstack.settings.layers import CONFIG_DIR

    monkeypatch.delenv("ISIC_CONFIG_DIR", raising=False)
    empty = tmp_path / "no-configs"
    empty.mkdir()
    drift = {}
    for stage, spec in STAGES.items():
        cls = getattr(importlib.import_module(spec.module), spec.config_class)
        shipped = dataclasses.asdict(load_config(cls, spec.yaml, "default", use_tuned=False,
                                                 config_dir=CONFIG_DIR))
        bare = dataclasses.asdict(load_config(cls, spec.yaml, "default", use_tuned=False,
                                              config_dir=empty))
        drift.update({f"{stage}.{k}": (bare[k], v) for k, v in shipped.items() if bare[k] != v})
    assert not drift, f"dataclass default vs configs/*.yaml base: {drift}"


def test_override_values_yaml_cannot_parse_stay_strings():
    """`labels_path=...` or an unclosed bracket is a string, not a YAML traceback."""
    assert parse_overrides(["a=...", "c=[1, 2", "d=3", "e=x: y"]) == {
        "a": "...", "c": "[1, 2", "d": 3, "e": {"x": "y"}}
