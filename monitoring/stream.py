"""The deployment stream ``isic replay`` sends: windows of new generated patients, some with a
planted shift, built without any server (so a test can check them in a second).

New patients come from the synthetic generator with the training profile's settings and another
seed, so a clean window is drawn from the distribution the bundle's reference describes; their
ids are in a namespace training never uses (``ISIC_R<seed>A_...``, ``IP_R<seed>A_...``). A
window holds exactly ``window`` lesions: whole patients in generated order, the last one trimmed
(its other lesions are dropped). The shifts, each planted on whole windows:

- ``centre``: whole patients, chosen at random up to ``centre_share`` of the window's lesions,
  get an ``attribution`` value training never had (a new clinic sends its patients);
- ``age``: ``age_approx`` + ``age_years`` on every lesion;
- ``colour``: ``cast_share`` of the crops re-encoded with ``cast_rgb`` added per channel;
- ``prevalence``: the window comes from a second pool generated at ``prevalence_factor`` x the
  training prevalence (only the labels differ: the inputs keep their distribution).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl

from isicstack.data.crops import decode_jpeg, encode_jpeg
from isicstack.monitoring.replay_config import ReplayConfig
from isicstack.settings.keys import ConfigError
from isicstack.settings.layers import load_config
from isicstack.synthetic.config import SynthConfig
from isicstack.synthetic.generate import crop_params, simulate
from isicstack.synthetic.kaggle_tables import kaggle_frame
from isicstack.synthetic.render import encode_images

CLEAN = "clean"


@dataclass
class Window:
    """One window: its lesions (test schema + ``target``), their JPEG crops, what was planted."""

    index: int
    shift: str  # clean | centre | age | colour | prevalence
    rows: pl.DataFrame
    crops: dict[str, bytes]
    planted: dict[str, Any] = field(default_factory=dict)  # e.g. the share that got the centre

    def summary(self) -> dict[str, Any]:
        """The manifest's entry: where the window is in the log and what it holds."""
        ids = self.rows["isic_id"]
        return {"window": self.index, "shift": self.shift, "lesions": self.rows.height,
                "patients": self.rows["patient_id"].n_unique(), "first": ids[0], "last": ids[-1],
                "positives": int(self.rows["target"].sum()), **self.planted}


def layout(cfg: ReplayConfig) -> list[str]:
    """Each window's shift: ``clean`` windows, then each shift's segment, clean gaps between."""
    out = [CLEAN] * cfg.clean
    for k, shift in enumerate(cfg.shifts):
        out += ([CLEAN] * cfg.gap if k else []) + [shift] * cfg.shift_windows
    return out


def synth_settings(cfg: ReplayConfig) -> SynthConfig:
    """The training data's generator settings (configs/synth.yaml's profile)."""
    return load_config(SynthConfig, "synth", cfg.synth_profile or cfg.profile, [])


def stream_seeds(cfg: ReplayConfig, train: SynthConfig) -> tuple[int, int]:
    """The seeds of the clean pool and of the prevalence pool: never the training seed."""
    seeds = (cfg.seed, cfg.seed + 1)
    if train.seed in seeds:
        raise ConfigError(f"seed={cfg.seed}: the stream's pools use seeds {list(seeds)}, and "
                          f"the training data were generated with seed {train.seed}; pick "
                          "another (the stream must be new patients)")
    return seeds


class Pool:
    """Generated patients, handed out window by window (whole patients, the last trimmed)."""

    def __init__(self, train: SynthConfig, seed: int, rows: int, prevalence: float,
                 tag: str, per_patient: float = 0.0) -> None:
        per = per_patient or max(train.rows, 1) / train.patients  # 0: training's lesions/patient
        patients = max(1, round(rows / per))
        self.cfg = replace(train, rows=rows, patients=patients, test_rows=3, seed=seed,
                           prevalence=prevalence, out="")
        c, is_train, lat = simulate(self.cfg)
        idx = np.flatnonzero(is_train)
        idx = idx[np.argsort(c["pid"][idx], kind="stable")]  # patients contiguous
        frame = kaggle_frame(c, idx, np.random.default_rng([seed, 5]), "test")
        pid = c["pid"][idx]
        self.rows = frame.with_columns(
            isic_id=pl.Series([f"ISIC_{tag}_{k:07d}" for k in range(len(idx))]),
            patient_id=pl.Series([f"IP_{tag}_{p:07d}" for p in pid]),
            target=pl.Series(c["target"][idx].astype(np.int8)))
        self.params = crop_params(self.cfg, c, lat)[idx]
        self.starts = np.flatnonzero(np.r_[True, pid[1:] != pid[:-1]])
        self.next = 0  # index into starts: the next patient handed out

    def take(self, n: int) -> np.ndarray | None:
        """Row indices of the next ``n`` lesions (whole patients, the last trimmed); None when
        the pool has fewer left."""
        ends = np.r_[self.starts[1:], self.rows.height]
        take: list[np.ndarray] = []
        got, p = 0, self.next
        while got < n:
            if p >= len(self.starts):
                return None
            k = min(int(ends[p] - self.starts[p]), n - got)
            take.append(np.arange(self.starts[p], self.starts[p] + k))
            got, p = got + k, p + 1
        self.next = p
        return np.concatenate(take)


def _pool_rows(windows: int, size: int, scale: float) -> int:
    return max(2000, math.ceil(windows * size * scale))


def pool_of(shift: str) -> str:
    """Which pool a window of ``shift`` draws from."""
    return "prevalence" if shift == "prevalence" else CLEAN


def pools(cfg: ReplayConfig, train: SynthConfig, plan: list[str]) -> dict[str, Pool]:
    """The clean pool and (when planned) the prevalence pool, each big enough for its windows:
    a margin for the trimmed patients, doubled until every window of ``plan`` fits."""
    seed_a, seed_b = stream_seeds(cfg, train)
    n_b = plan.count("prevalence")
    for scale in (1.4, 2.8, 5.6):
        by = {CLEAN: Pool(train, seed_a, _pool_rows(len(plan) - n_b, cfg.window, scale),
                          train.prevalence, f"R{cfg.seed}A", cfg.lesions_per_patient)}
        if n_b:
            by["prevalence"] = Pool(train, seed_b, _pool_rows(n_b, cfg.window, scale),
                                    min(0.5, train.prevalence * cfg.prevalence_factor),
                                    f"R{cfg.seed}B", cfg.lesions_per_patient)
        if all(by[pool_of(s)].take(cfg.window) is not None for s in plan):
            for pool in by.values():
                pool.next = 0
            return by
    raise ValueError("replay: the generated pools ran out of patients (a patient larger than "
                     "the window?)")


def _crops(pool: Pool, idx: np.ndarray, index: int) -> dict[str, bytes]:
    """JPEG crops of rows ``idx``; each crop seeded by (pool seed, 2 + window, row in window)."""
    ids = pool.rows["isic_id"].gather(idx).to_list()
    return dict(encode_images(ids, pool.params[idx], pool.cfg.seed, 2 + index, 1,
                              pool.cfg.jpeg_quality))


def plant(window: Window, cfg: ReplayConfig, quality: int) -> Window:
    """``window`` with its shift planted (a clean or prevalence window is returned as it is)."""
    rng = np.random.default_rng([cfg.seed, 7, window.index])
    rows = window.rows
    if window.shift == "centre":
        sizes = rows.group_by("patient_id", maintain_order=True).len()
        pids, lens = sizes["patient_id"].to_list(), sizes["len"].to_list()
        target, chosen, got = cfg.centre_share * rows.height, [], 0
        for i in rng.permutation(len(pids)).tolist():
            if got + lens[i] <= target:
                chosen.append(pids[i])
                got += lens[i]
        window.rows = rows.with_columns(attribution=pl.when(pl.col("patient_id").is_in(chosen))
                                        .then(pl.lit(cfg.centre)).otherwise("attribution"))
        window.planted = {"centre": cfg.centre, "centre_patients": len(chosen),
                          "centre_share": round(got / rows.height, 4)}
    elif window.shift == "age":
        window.rows = rows.with_columns(pl.col("age_approx") + cfg.age_years)
        window.planted = {"age_years": cfg.age_years}
    elif window.shift == "colour":
        ids = rows["isic_id"].to_list()
        cast = rng.choice(len(ids), round(cfg.cast_share * len(ids)), replace=False)
        shift = np.asarray(cfg.cast_rgb, dtype=np.float32)
        for i in cast:
            img = decode_jpeg(window.crops[ids[i]]).astype(np.float32) + shift
            window.crops[ids[i]] = encode_jpeg(np.clip(img, 0, 255).astype(np.uint8), quality)
        window.planted = {"cast_rgb": list(cfg.cast_rgb), "cast_crops": len(cast)}
    elif window.shift == "prevalence":
        window.planted = {"prevalence_factor": cfg.prevalence_factor}
    return window


def windows(cfg: ReplayConfig, train: SynthConfig | None = None) -> Iterator[Window]:
    """The stream, window by window (crops rendered as each window is reached)."""
    train = train or synth_settings(cfg)
    plan = layout(cfg)
    by = pools(cfg, train, plan)
    for index, shift in enumerate(plan):
        pool = by[pool_of(shift)]
        idx = pool.take(cfg.window)
        assert idx is not None  # pools() checked that every window fits
        win = Window(index, shift, pool.rows[idx], _crops(pool, idx, index))
        yield plant(win, cfg, train.jpeg_quality)
