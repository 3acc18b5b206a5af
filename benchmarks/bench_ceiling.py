"""How far can the image stage go on the synthetic default? A ceiling drawn from the generator.

The image-only latent (``logit_image``) is drawn only as blue-white veil. Re-drawing every
train crop's veil layer (``evaluation.oracle.veil_shares``) gives the share of each lesion
under veil: what a perfect reader of the crops could measure. Parts:

- ``ceiling`` (bench_pipeline's chains, fold seeds 0 1 2; seconds): Spearman of the veil share
  with ``logit_image``; per seed, LightGBM's and the fused model's OOF pAUC, and the best
  *in-sample* linear blend ``logit(LightGBM) + w * g`` over a grid of w, with g = a perfect
  reader (isotonic fit of ``logit_image`` on the veil share), the fused run's image term, or
  the image-only score: about the most a fused model of the form tabular logit + image term
  gets from that score (models that re-fit the table, like the second GBDT pass, can go
  further). Spearman of each image score with the veil share.
- ``recipes`` (fold 0 of seed 0's chain, two runs at a time, 1 thread each; ~25 min): the
  residual fused recipe (``make_all``: ``make all``'s before the cuts) and variants (twice
  the steps, 32 px, a smaller net, 3 negatives per positive): fold-0 pAUC and the image term's
  Spearman with the veil share.
- ``dense`` (fold 0 of seed 0; ~10 min): the same backbone, input and budget trained once on
  the label and once on the veil share itself (dense supervision, which no real data set has):
  how well the recipe reads the veil when told what to look for, against what 1 % positives
  teach it.

Writes ``benchmarks/results/ceiling.json``.

    python benchmarks/bench_ceiling.py [--parts ceiling,recipes,dense]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import spearmanr
from sklearn.isotonic import IsotonicRegression

from isicstack.conditions import cpu_has_bf16, cpu_model
from isicstack.data.io import write_json
from isicstack.data.layout import resolve_data_dir
from isicstack.data.metric import logit, pauc
from isicstack.data.predictions import load_oof
from isicstack.evaluation.oracle import oracle_parts, veil_shares
from isicstack.settings.layers import load_config
from isicstack.synthetic.config import SynthConfig

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CHAINS = ROOT / "artifacts" / "bench_pipeline"
TAB, FUSED, PART, IMG = "lgbm", "vision_fused", "vision_fused_image_part", "vision_imgonly"
WEIGHTS = np.linspace(0.0, 2.0, 21)
# the residual recipe, `make all`'s fused run before the cuts (random init, 240 steps); the
# chain now starts it from the image-only models (configs/chain.yaml)
FUSED_RECIPE = ["fusion=true", f"tabular_name={TAB}", "optim.steps=240"]
VARIANTS = {"make_all": [], "steps_480": ["optim.steps=480"],
            "px32_steps_480": ["model.image_size=32", "optim.steps=480"],
            "resnet10t": ["model.name=resnet10t"], "neg_ratio_3": ["data.neg_ratio=3"]}


def _spear(a: np.ndarray, b: np.ndarray) -> float:
    return float(spearmanr(a, b).statistic)


def shares_of(folds: pl.DataFrame, veil: pl.DataFrame) -> np.ndarray:
    """The veil share of each row of ``folds``, in row order."""
    return folds.select("isic_id").join(veil, on="isic_id", how="left",
                                        maintain_order="left")["veil_share"].to_numpy()


def best_blend(y: np.ndarray, base: np.ndarray, extra: np.ndarray) -> dict[str, float]:
    """The best pAUC of ``base + w * extra`` over the weight grid (in-sample: an upper bound)."""
    scores = [pauc(y, base + w * extra) for w in WEIGHTS]
    k = int(np.argmax(scores))
    return {"pauc": scores[k], "w": float(WEIGHTS[k])}


def ceiling(veil: pl.DataFrame, oracle: Path, seeds: list[int]) -> dict[str, Any]:
    """Per chain seed: LightGBM, fused, and the best blends of LightGBM with each image score."""
    out: dict[str, Any] = {}
    for seed in seeds:
        chain = CHAINS / f"seed{seed}"
        if not (chain / "oof" / f"{PART}.parquet").is_file():
            print(f"ceiling: no chain with {PART} in {chain}; seed {seed} skipped "
                  "(run benchmarks/bench_pipeline.py first)")
            continue
        folds = pl.read_parquet(chain / "folds.parquet")
        y = folds["target"].to_numpy()
        share = shares_of(folds, veil)
        u = oracle_parts(oracle, folds["isic_id"])["logit_image"].to_numpy()
        reader = IsotonicRegression(out_of_bounds="clip").fit(share, u).predict(share)
        p = {n: load_oof(chain / "oof" / f"{n}.parquet", folds) for n in (TAB, FUSED, PART, IMG)}
        base = logit(p[TAB])
        row: dict[str, Any] = {"spearman_veil_logit_image": _spear(share, u),
                               TAB: pauc(y, p[TAB]), FUSED: pauc(y, p[FUSED]),
                               "fused_minus_lgbm": pauc(y, p[FUSED]) - pauc(y, p[TAB])}
        for name, score in (("perfect_reader", reader), (PART, logit(p[PART])),
                            (IMG, logit(p[IMG]))):
            blend = best_blend(y, base, score)
            row[name] = {"alone": pauc(y, score), "spearman_veil": _spear(score, share),
                         "best_blend": blend["pauc"], "w": blend["w"],
                         "blend_minus_lgbm": blend["pauc"] - row[TAB]}
        out[str(seed)] = row
        print("ceiling", seed, json.dumps(row, default=float)[:400], flush=True)
    return out


def _copy_chain(chain: Path, art: Path) -> None:
    """The chain's folds and tabular scores, copied anew each time: a run made on older copies
    is redone by the stage's own provenance check rather than reused."""
    for rel in ("folds.parquet", f"oof/{TAB}.parquet", f"test/{TAB}.parquet"):
        (art / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(chain / rel, art / rel)


def recipes(veil: pl.DataFrame, oracle: Path, art: Path) -> dict[str, Any]:
    """Fold 0 of each fused variant (a finished run is resumed, i.e. reused)."""
    _copy_chain(CHAINS / "seed0", art)
    base = [str(ROOT / ".venv" / "bin" / "isic"), "train-image", "--profile", "default",
            f"artifacts={art}", "folds=[0]", "predict_test=false", "runtime.cpu_threads=1",
            *FUSED_RECIPE]
    names = list(VARIANTS)
    for i in range(0, len(names), 2):  # two 1-thread runs beat one 2-thread run on 2 cores
        procs = [(n, subprocess.Popen([*base, f"name=c_{n}", *VARIANTS[n]], cwd=ROOT,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True)) for n in names[i:i + 2]]
        for n, proc in procs:
            _, err = proc.communicate()
            if proc.returncode:
                raise SystemExit(f"recipe {n} failed:\n{err[-2000:]}")
    folds = pl.read_parquet(art / "folds.parquet").filter(pl.col("fold") == 0)
    y = folds["target"].to_numpy()
    share = shares_of(folds, veil)
    u = oracle_parts(oracle, folds["isic_id"])["logit_image"]
    out: dict[str, Any] = {}
    runs = {"chain": CHAINS / "seed0" / "oof" / FUSED, **{n: art / "oof" / f"vision_c_{n}"
                                                         for n in names}}
    for n, stem in runs.items():
        pred, part = (load_oof(stem.with_name(stem.name + s + ".parquet"), folds, exact=False)
                      for s in ("", "_image_part"))  # the chain's files hold every fold
        setup = ((" ".join(VARIANTS[n]) or "none (1 thread)") if n in VARIANTS
                 else "the chain's own fused run (2 threads)")
        out[n] = {"overrides": setup,
                  "fold0_pauc": pauc(y, pred),
                  "image_part_pauc": pauc(y, part),
                  "image_part_spearman_veil": _spear(part, share),
                  "image_part_spearman_logit_image": _spear(part, u)}
        print("recipe", n, out[n], flush=True)
    return out


def dense(veil: pl.DataFrame, steps: int = 240, batch: int = 32) -> dict[str, Any]:
    """The make-all backbone/input/budget trained on the label vs on the veil share (fold 0)."""
    import timm
    import torch

    from isicstack.vision.cache import read_resized
    from isicstack.vision.data import MEAN, STD, open_source

    torch.set_num_threads(1)
    folds = pl.read_parquet(CHAINS / "seed0" / "folds.parquet")
    data = resolve_data_dir("auto", "default")
    crops = read_resized(open_source(data / "train-image.hdf5"), folds["isic_id"].to_list(),
                         64)[0]
    x_all = torch.from_numpy(crops).permute(0, 3, 1, 2)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (MEAN, STD))
    share = shares_of(folds, veil)
    fold = folds["fold"].to_numpy()
    tr, va = np.flatnonzero(fold != 0), np.flatnonzero(fold == 0)

    def inputs(idx: np.ndarray) -> torch.Tensor:
        return (x_all[idx].float() / 255 - mean) / std
    out: dict[str, Any] = {}
    for target in ("label", "veil_share"):
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        t = (folds["target"].to_numpy() if target == "label"
             else (share - share.mean()) / share.std()).astype(np.float32)
        net = timm.create_model("resnet18", num_classes=1)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=steps, pct_start=0.25)
        loss_fn = (torch.nn.functional.binary_cross_entropy_with_logits if target == "label"
                   else torch.nn.functional.mse_loss)
        pos, neg = (tr[t[tr] > 0.5], tr[t[tr] < 0.5]) if target == "label" else (None, None)
        for _ in range(steps):  # the label: all positives + 10x negatives, like the sampler
            pool = tr if pos is None else np.concatenate(
                [pos, rng.choice(neg, 10 * len(pos), replace=False)])
            idx = rng.choice(pool, batch, replace=False)
            x = inputs(idx)
            x = x.flip(3) if rng.random() < 0.5 else x
            loss = loss_fn(net(x).squeeze(1), torch.from_numpy(t[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.inference_mode():
            score = torch.cat([net(inputs(va[i:i + 256]))
                               for i in range(0, len(va), 256)]).squeeze(1).numpy()
        out[target] = {"spearman_veil": _spear(score, share[va]), "steps": steps,
                       "batch": batch}
        print("dense", target, out[target], flush=True)
    return out


def machine(model: str, bf16: bool) -> str:
    """One line for the tables: the CPU and whether the CNN ran in bf16 or float32."""
    return f"{model}, {'AVX512-BF16 (bf16 autocast)' if bf16 else 'no AVX512-BF16 (float32)'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="ceiling,recipes,dense")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=RESULTS / "ceiling.json")
    args = ap.parse_args()
    data = resolve_data_dir("auto", "default")
    if not (data / "oracle.parquet").is_file() or not (CHAINS / "seed0").is_dir():
        print(f"skip: needs the synthetic default ({data}) and bench_pipeline's chains "
              f"({CHAINS}); run benchmarks/bench_pipeline.py first")
        return
    veil = veil_shares(load_config(SynthConfig, "synth", "default"))
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    # parts are rerun separately, maybe on other boxes: each records its own machine
    old = result.pop("cpu_model", None), result.pop("cpu_bf16", None)
    machines = result.setdefault("machines", {})
    for part in ("ceiling", "recipes", "dense"):
        if part in result and part not in machines and old[0] is not None:
            machines[part] = machine(*old)
    for part in args.parts.split(","):
        machines[part] = machine(cpu_model(), cpu_has_bf16())
        if part == "ceiling":
            result["ceiling"] = ceiling(veil, data / "oracle.parquet", args.seeds)
        elif part == "recipes":
            result["recipes"] = recipes(veil, data / "oracle.parquet",
                                        ROOT / "artifacts" / "bench_ceiling")
        elif part == "dense":
            result["dense"] = dense(veil)
        else:
            raise SystemExit(f"unknown part {part!r}")
    write_json(result, args.out)


if __name__ == "__main__":
    main()
