"""isic monitor on simulated windows: planted shifts are flagged, clean windows are not, the
verification-bias correction recovers the true sensitivity, and the command writes its report
and exits 3 on an alert. Windows are analysed as frames (no SQLite round trip) except in the
end-to-end test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from monitor_fixtures import make_bundle, simulate, to_frame, write_log

from isicstack.monitoring import run as monitor
from isicstack.monitoring.config import MonitorConfig
from isicstack.monitoring.outcomes import outcome_figures
from isicstack.pipelines.cli import main
from isicstack.settings.command import CommandExit
from isicstack.settings.layers import ConfigError

CFG = MonitorConfig(n_boot=20)
EXPECTED = {"centre": "unseen", "age": "numeric", "colour": "crop", "prevalence": "calibration"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, dict]:
    folder, threshold = make_bundle(tmp_path_factory.mktemp("bundle") / "b")
    return folder, threshold, monitor.load_reference(folder)[0]


def _alerts(ref: dict, threshold: float, shift: str, i: int, per: float = 5,
            cfg: MonitorConfig = CFG) -> list[dict]:
    c = simulate(np.random.default_rng(100 + i), 1000, per, shift, start=i)
    return monitor.analyse_window(to_frame(c, threshold, seed=i), ref, cfg)["alerts"]


def test_clean_windows_are_quiet_and_each_planted_shift_is_flagged_within_two(bundle):
    _, threshold, ref = bundle
    clean = [_alerts(ref, threshold, "", i) for i in range(8)]
    assert sum(bool(a) for a in clean) <= 1, clean
    for shift, family in EXPECTED.items():
        found = [_alerts(ref, threshold, shift, 50 + j) for j in range(2)]
        assert any(a["family"] == family for got in found for a in got), (shift, found)


def test_patients_with_many_lesions_do_not_alarm_thanks_to_the_design_effect(bundle):
    _, threshold, ref = bundle
    corrected = [_alerts(ref, threshold, "", 200 + i, per=60) for i in range(3)]
    assert not any(corrected), corrected
    naive = [_alerts(ref, threshold, "", 200 + i, per=60,
                     cfg=MonitorConfig(n_boot=20, cluster=False)) for i in range(3)]
    assert any(naive)  # counting lesions as independent would page someone for nothing


def test_verification_bias_correction_recovers_the_true_sensitivity(bundle):
    _, threshold, _ = bundle
    c = simulate(np.random.default_rng(7), 30000, 3)
    frame = to_frame(c, threshold, seed=7, biopsy=0.9, audit=0.1)
    truth = float((c["score"][c["label"] == 1] >= threshold).mean())
    figs = outcome_figures(frame["score"].to_numpy(), frame["risk"].to_numpy(),
                           frame["flag"].to_numpy() > 0, frame["label"].fill_null(np.nan)
                           .to_numpy(), np.unique(frame["patient_hash"], return_inverse=True)[1],
                           MonitorConfig(n_boot=100))
    corrected = figs["corrected"]["sensitivity"]
    assert figs["naive"]["sensitivity"] > truth + 0.1  # the biased figure
    assert corrected["ci"][0] <= truth <= corrected["ci"][1]
    assert abs(corrected["value"] - truth) < 0.1


def test_monitor_command_writes_its_report_and_exits_3_on_an_alert(bundle, tmp_path, capsys):
    folder, threshold, _ = bundle
    rng = np.random.default_rng(3)
    windows = [simulate(rng, 300, 5, s, start=i) for i, s in enumerate(["", "", "centre"])]
    write_log(tmp_path / "log.db", windows, threshold)
    args = [f"log={tmp_path / 'log.db'}", f"bundle={folder}", "window=300", "n_boot=20",
            f"out={tmp_path / 'out'}"]
    assert main(["monitor", *args]) == 3
    assert "window 2: unseen attribution" in capsys.readouterr().out
    doc = json.loads((tmp_path / "out" / "monitor.json").read_text())
    assert [bool(w["alerts"]) for w in doc["windows"]] == [False, False, True]
    assert (tmp_path / "out" / "monitor.png").stat().st_size > 1000
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Verification bias" in text and "Begg-Greenes" in text and "Holm" in text
    cfg = MonitorConfig(log=str(tmp_path / "log.db"), bundle=str(folder), window="1h",
                        out=str(tmp_path / "o2"), n_boot=20)
    with pytest.raises(CommandExit) as done:
        monitor.run(cfg)
    assert done.value.code == 3 and len(done.value.result["windows"]) == 3


def test_bad_inputs_name_the_file_and_field(bundle, tmp_path):
    folder, _, ref = bundle
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "reference.json").write_text(json.dumps({**ref, "numeric": {"age_approx": {}}}))
    with pytest.raises(ValueError, match=r"reference.json: field 'numeric.age_approx.edges'"):
        monitor.load_reference(bad)
    (bad / "reference.json").write_text(json.dumps({"format": 2}))
    with pytest.raises(ValueError, match="field 'format' must be 1"):
        monitor.load_reference(bad)
    with pytest.raises(FileNotFoundError, match="no reference.json"):
        monitor.load_reference(tmp_path)
    with pytest.raises(ConfigError, match="window='7x'"):
        monitor.window_ids(np.arange(3.0), "7x")
    assert monitor.window_ids(np.array([0.0, 3599, 3600, 90000]), "1h").tolist() == [0, 0, 1, 25]
    cfg = MonitorConfig(log=str(tmp_path / "none.db"), bundle=str(folder))
    with pytest.raises(FileNotFoundError, match="none.db"):
        monitor.run(cfg)
