"""Typed configs: profiles, overrides, unknown keys and wrong types are named errors."""

import dataclasses
import typing
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
    every stage). An import error of a config module fails here, it is not skipped."""
    from isicstack.pipelines.stages import STAGES, config_class
    from isicstack.settings.layers import CONFIG_DIR, known_profiles

    monkeypatch.delenv("ISIC_CONFIG_DIR", raising=False)
    shipped = {p.name[:-5] for p in CONFIG_DIR.iterdir() if p.name.endswith(".yaml")}
    assert shipped - {"chain"} == {spec.yaml for spec in STAGES.values()}  # chain: test_chain
    profiles = known_profiles(CONFIG_DIR)
    assert {"default", "smoke", "full"} <= set(profiles)
    checked = set()
    for stage, spec in STAGES.items():
        cls = config_class(stage)
        for profile in profiles:
            cfg = load_config(cls, spec.yaml, profile, use_tuned=False, config_dir=CONFIG_DIR)
            assert isinstance(cfg, cls)
            if hasattr(cfg, "profile"):
                assert cfg.profile == profile
        checked.add(stage)
    assert checked == {"synth", "folds", "train-tabular", "train-image", "stack", "predict",
                       "kaggle-package", "report", "tune", "evaluate", "predict-images",
                       "ingest", "explain", "app", "calibrate", "subgroups", "loco",
                       "runs", "bundle", "promote", "serve", "monitor", "forget-patient",
                       "prune-log", "replay", "space"}


def _shadowed(cls: type, base: dict, prefix: str = "") -> list[str]:
    """Dotted keys of a YAML ``base`` that set a field which has a default of its own."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = []
    for key, value in base.items():
        if dataclasses.is_dataclass(hints[key]) and isinstance(value, dict):
            out += _shadowed(hints[key], value, f"{prefix}{key}.")
        elif (fields[key].default is not dataclasses.MISSING
              or fields[key].default_factory is not dataclasses.MISSING):
            out.append(prefix + key)
    return out


def test_one_default_per_key(monkeypatch):
    """A key's default lives in its dataclass only: a shipped stage YAML holds profiles, and in
    `base:` only keys whose field has no default (none has one), so a default written twice
    cannot come back and drift apart."""
    from isicstack.pipelines.stages import STAGES, config_class
    from isicstack.settings.layers import CONFIG_DIR, read_yaml

    monkeypatch.delenv("ISIC_CONFIG_DIR", raising=False)
    assert _shadowed(Cfg, {"n": 5, "inner": {"lr": 0.05}}) == ["n", "inner.lr"]  # can fail
    shadowed = {stage: _shadowed(config_class(stage),
                                 read_yaml(CONFIG_DIR / f"{spec.yaml}.yaml").get("base") or {})
                for stage, spec in STAGES.items()}
    assert not any(shadowed.values()), f"defaults repeated in configs/*.yaml base: {shadowed}"


def test_override_values_yaml_cannot_parse_stay_strings():
    """`labels_path=...` or an unclosed bracket is a string, not a YAML traceback."""
    assert parse_overrides(["a=...", "c=[1, 2", "d=3", "e=x: y"]) == {
        "a": "...", "c": "[1, 2", "d": 3, "e": {"x": "y"}}


@dataclass
class Gbdt:
    params: dict[str, float] = field(default_factory=lambda: {"lr": 0.1, "depth": 6.0})
    rounds: int = 100


def test_a_profile_merges_into_the_dataclass_defaults(tmp_path: Path):
    """With no `base:` the defaults are the dataclass's, and a profile or override naming one
    key of a mapping keeps the mapping's other keys (as a full `base:` mapping used to)."""
    (tmp_path / "gbdt.yaml").write_text("profiles:\n  small: {params: {depth: 3}}\n")
    cfg = load_config(Gbdt, "gbdt", "small", ["params.lr=0.2"], config_dir=tmp_path)
    assert cfg.params == {"lr": 0.2, "depth": 3.0} and cfg.rounds == 100
    assert load_config(Gbdt, "gbdt", config_dir=tmp_path).params == {"lr": 0.1, "depth": 6.0}


def test_yaml_booleans_name_a_literal_member():
    """``register=off`` reaches the builder as YAML's False: it names the member spelled so."""
    from isicstack.serving.config import BundleConfig
    from isicstack.settings.build import build

    assert build(BundleConfig, {"register": False}).register == "off"
    assert build(BundleConfig, {"register": True}).register == "on"
    with pytest.raises(ConfigError, match="is not one of"):
        build(BundleConfig, {"register": "maybe"})
