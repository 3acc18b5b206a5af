"""The tables of BENCHMARKS.md: what each shows and which results file it reads.

``render.py`` turns each :class:`Table` into markdown (see its docstring for the template
syntax and how to add a table); ``plan.py`` lists the command that writes each results file.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    """A markdown table whose cells are templates over one results file."""

    source: str
    script: str
    header: list[str]
    rows: list[list[str]]
    each: str | None = None


def earlier_real_dev(source: str, overrides: str) -> Table:
    """A real-dev CV run of the last session's recipe (one table per results file)."""
    return Table(
        source, f"python benchmarks/bench_vision.py --real-dev --out benchmarks/results/{source} "
        f"{overrides}",
        ["setup (earlier runs, no TTA, a CPU with AVX512-BF16)", "OOF pAUC", "OOF AUC",
         "fold pAUC mean", "CPU wall time", "of the budget"],
        [["{config.model_name} {config.image_size} px, {config.steps} steps/fold, flip TTA "
          "{config.tta_flip}, fold seed {config.seed}", "{oof_pauc:.4f}", "{oof_auc:.3f}",
          "{mean_fold_pauc:.4f}", "{seconds:dur}", "{budget_used:pct}"]])


DATA = "python benchmarks/bench_data.py"
SYNTH = "python benchmarks/bench_synth.py"
TAB = "python benchmarks/bench_tabular.py"
PIPE = "python benchmarks/bench_pipeline.py --seeds 0 1 2"
COLOUR = "python benchmarks/bench_colour.py --seeds 42 43 44"
CEIL = "python benchmarks/bench_ceiling.py"
TABLES: dict[str, Table] = {
    "quality-synthetic": Table(
        "quality.json", "python benchmarks/bench_quality.py",
        ["model (OOF file)", "OOF pAUC", "OOF AUC", "fold pAUC mean ± sd", "share of oracle"],
        [["`{@key}`", "{@.oof_pauc:.4f}", "{@.oof_auc:.3f}",
          "{@.fold_pauc_mean:.4f} ± {@.fold_pauc_std:.4f}", "{@.share_of_oracle:pct}"]],
        each="models"),
    "quality-oracle": Table(
        "quality.json", "python benchmarks/bench_quality.py",
        ["data", "rows", "positives", "patients", "oracle pAUC (true probabilities)"],
        [["`{data_dir}`", "{rows:int}", "{positives:int}", "{patients:int}",
          "**{oracle_pauc:.4f}**"]]),
    "tabular-real-dev": Table(
        "tabular.json", TAB,
        ["configuration", "model", "OOF pAUC, mean ± sd over fold seeds 0, 1, 2"],
        [["`raw` + `categorical` groups", "LightGBM",
          "{real_dev.raw_categorical_lgbm.lgbm.mean:.4f} ± "
          "{real_dev.raw_categorical_lgbm.lgbm.sd:.4f}"],
         ["full feature set (raw, lesion, patient, ugly duckling, categorical)", "LightGBM",
          "{real_dev.full_config.lgbm.mean:.4f} ± {real_dev.full_config.lgbm.sd:.4f}"],
         ["full feature set", "XGBoost",
          "{real_dev.full_config.xgb.mean:.4f} ± {real_dev.full_config.xgb.sd:.4f}"]]),
    "data": Table(
        "data.json", DATA, ["", "figure"],
        [["`load_metadata` + validation of {metadata.rows:int} rows x 55 columns",
          "**{metadata.seconds:.2f} s** ({metadata.rows_per_s:int} rows/s), "
          "peak RSS {metadata.peak_rss_mib:int} MiB (fresh process)"],
         ["JPEG decode from memory (simplejpeg), {crops.images:int} crops, "
          "median {crops.median_side_px} px", "{crops.decode_from_memory_per_s:int} img/s"],
         ["`CropStore` HDF5 read + decode, one process",
          "{crops.hdf5_read_decode_per_s:int} img/s"],
         ["DataLoader over `CropStore`, 2 workers (lazy per-worker handle)",
          "{crops.dataloader_2_workers_per_s:int} img/s"],
         ["HDF5 read + decode vs decode alone (time ratio)",
          "{crops.hdf5_overhead_ratio}x"]]),
    "synth": Table(
        "synth.json", SYNTH, ["", "figure"],
        [["full-size tables ({rows:int} rows, {patients:int} patients, oracle)",
          "**{tables_seconds} s** ({table_rows_per_s:int} rows/s)"],
         ["crops at {image_size} px (render + JPEG, {workers} worker processes, "
          "{images_timed:int} timed)", "**{images_per_s} img/s**, {mean_jpeg_kib} KiB per JPEG"],
         ["projected: all {rows:int} crops at that rate", "~{projected_full_minutes:.0f} min"]]),
    "features-full": Table(
        "features.json", "python benchmarks/bench_features.py", ["", "figure", "goal"],
        [["feature build ({n_numeric} numeric + {n_categorical} categorical; {rows:int} rows, "
          "{patients:int} patients, {lesions_per_patient.min}–{lesions_per_patient.max:int} "
          "lesions each)", "{seconds} s, peak RSS {peak_rss_mib:int} MiB",
          "< {goal.seconds} s, < {goal.peak_rss_mib:int} MiB"]]),
    "tabular-full": Table(
        "tabular.json", TAB,
        ["model (full profile)", "OOF pAUC", "OOF AUC",
         "share of oracle ({full.oracle_pauc:.4f})", "CV time"],
        [["LightGBM", "{full.lgbm.oof_pauc:.4f}", "{full.lgbm.oof_auc:.3f}",
          "{full.lgbm.fraction_of_oracle:pct}", "{full.lgbm.seconds:dur}"],
         ["XGBoost", "{full.xgb.oof_pauc:.4f}", "{full.xgb.oof_auc:.3f}",
          "{full.xgb.fraction_of_oracle:pct}", "{full.xgb.seconds:dur}"],
         ["`isic train-tabular --profile full` ({full.rows:int} rows, {full.positives} "
          "positives; features + both models)", "", "", "", "**{full.wall_seconds:dur}**"]]),
    "inference": Table(
        "inference.json", "python benchmarks/bench_inference.py",
        ["", "{runs.10000.rows:int} test rows", "{runs.100000.rows:int} test rows"],
        [["tabular path (features + GBDT models), rows/s",
          "{runs.10000.tabular_rows_per_s:int}", "{runs.100000.tabular_rows_per_s:int}"],
         ["image path, one fold (img/s)", "{runs.10000.image_images_per_s:int}",
          "{runs.100000.image_images_per_s:int}"],
         ["peak RSS of `isic predict`", "{runs.10000.peak_rss_mb:int} MB",
          "{runs.100000.peak_rss_mb:int} MB"],
         ["projected for 500,000 rows: tabular", "{runs.10000.projected_500k_seconds.tabular:dur}",
          "{runs.100000.projected_500k_seconds.tabular:dur}"],
         ["projected for 500,000 rows: image models, 5 folds",
          "{runs.10000.projected_500k_seconds.image_5_folds:dur}",
          "{runs.100000.projected_500k_seconds.image_5_folds:dur}"]]),
    "tune": Table(
        "tune.json", "python benchmarks/bench_tune.py",
        ["sweep", "trials (complete / pruned)", "untuned pAUC", "best pAUC", "wall",
         "trials/min"],
        [["{sweep.workers} worker, SQLite", "{sweep.trials} ({sweep.complete} / {sweep.pruned})",
          "{sweep.untuned_pauc:.4f}", "**{sweep.best_pauc:.4f}** (trial {sweep.best_trial})",
          "{sweep.wall_seconds:dur}", "{sweep.trials_per_min}"],
         ["{workers_postgresql.workers} workers, PostgreSQL (loopback)",
          "{workers_postgresql.trials} ({workers_postgresql.complete} / "
          "{workers_postgresql.pruned})", "{workers_postgresql.untuned_pauc:.4f}",
          "{workers_postgresql.best_pauc:.4f} (trial {workers_postgresql.best_trial})",
          "{workers_postgresql.wall_seconds:dur}", "{workers_postgresql.trials_per_min}"]]),
    "tune-spread": Table(
        "tune.json", "python benchmarks/bench_tune.py --parts spread",
        ["configuration", "OOF pAUC over 5 fold seeds (mean ± sd)"],
        [["untuned default LightGBM",
          "**{spread_5_seeds.lgbm.mean:.4f} ± {spread_5_seeds.lgbm.sd:.4f}**"]]),
    "pipeline-models": Table(
        "pipeline.json", PIPE,
        ["model (OOF file)", "OOF pAUC, mean ± sd over fold seeds",
         "Spearman with `logit_image` (image-only part of the truth)"],
        [["`{@key}`", "**{@.pauc.mean:.4f}** ± {@.pauc.sd:.4f}",
          "{@.spearman_logit_image.mean:.3f} ± {@.spearman_logit_image.sd:.3f}"]],
        each="summary.models"),
    "pipeline-goals": Table(
        "pipeline.json", PIPE,
        ["goal (issue 9)", "figure, mean ± sd over fold seeds", "met on every seed"],
        [["image-only OOF pAUC >= 0.10",
          "{summary.models.vision_imgonly.pauc.mean:.4f} ± "
          "{summary.models.vision_imgonly.pauc.sd:.4f}",
          "{summary.goals_met_every_seed.image_only_ge_010}"],
         ["fused >= its tabular input (LightGBM) + 0.01",
          "{summary.gains.fused_minus_lgbm.mean:+.4f} ± {summary.gains.fused_minus_lgbm.sd:.4f}",
          "{summary.goals_met_every_seed.fused_ge_tabular_plus_001}"],
         ["second-pass GBDT >= first pass + 0.005 (LightGBM)",
          "{summary.gains.lgbm_img_minus_lgbm.mean:+.4f} ± "
          "{summary.gains.lgbm_img_minus_lgbm.sd:.4f}",
          "{summary.goals_met_every_seed.second_pass_ge_first_plus_0005}"],
         ["second-pass GBDT >= first pass + 0.005 (XGBoost)",
          "{summary.gains.xgb_img_minus_xgb.mean:+.4f} ± {summary.gains.xgb_img_minus_xgb.sd:.4f}",
          "(same row above: both models)"],
         ["stack >= every input", "{summary.gains.stack_minus_best_input.mean:+.4f} ± "
          "{summary.gains.stack_minus_best_input.sd:.4f}",
          "{summary.goals_met_every_seed.stack_ge_every_input}"]]),
    "pipeline-times": Table(
        "pipeline.json", PIPE,
        ["`make` target", "wall time, mean ± sd over fold seeds"],
        [["`{@key}`", "{@.mean:dur} ± {@.sd:dur}"]], each="summary.stages"),
    "pipeline-total": Table(
        "pipeline.json", PIPE,
        ["", "wall time", "oracle pAUC (true probabilities)"],
        [["**total `make all`** (data already generated)",
          "**{summary.total_seconds.mean:dur}** ± {summary.total_seconds.sd:dur}",
          "{summary.oracle_pauc.mean:.4f}"]]),
    "vision-cpu": Table(
        "vision_cpu.json", "python benchmarks/bench_vision.py",
        ["", "64 px", "128 px"],
        [["DataLoader, 2 workers, train augmentation, HDF5 + decode (img/s)",
          "{loader.64px:int}", "{loader.128px:int}"],
         ["resnet18 train step, 1 / 2 threads (img/s)",
          "{step.resnet18@64px/1thr.train_img_s:.0f} / {step.resnet18@64px/2thr.train_img_s:.0f}",
          "{step.resnet18@128px/1thr.train_img_s:.0f} / "
          "{step.resnet18@128px/2thr.train_img_s:.0f}"],
         ["resnet50 train step, 1 / 2 threads (img/s)",
          "{step.resnet50@64px/1thr.train_img_s:.0f} / {step.resnet50@64px/2thr.train_img_s:.0f}",
          "{step.resnet50@128px/1thr.train_img_s:.1f} / "
          "{step.resnet50@128px/2thr.train_img_s:.0f}"],
         ["resnet50 eval, 2 threads (img/s)", "{step.resnet50@64px/2thr.eval_img_s:.0f}",
          "{step.resnet50@128px/2thr.eval_img_s:.0f}"]]),
    "vision-real-dev": Table(
        "vision_real_dev.json", "python benchmarks/bench_vision.py --real-dev",
        ["setup", "OOF pAUC", "OOF AUC", "fold pAUC mean", "CPU wall time", "of the budget"],
        [["{config.model_name} {config.image_size} px, random init, {config.steps} steps/fold, "
          "flip TTA {config.tta_flip}, 5 folds, fold seed {config.seed}", "**{oof_pauc:.4f}**",
          "{oof_auc:.3f}", "{mean_fold_pauc:.4f}", "{seconds:dur}", "{budget_used:pct}"]]),
    "vision-real-dev-ema": Table(
        "vision_real_dev_ema.json",
        "python benchmarks/bench_vision.py --real-dev --out "
        "benchmarks/results/vision_real_dev_ema.json ema_decay=0.98 ema_start=0.5 cpu_threads=1",
        ["setup", "OOF pAUC", "OOF AUC", "fold pAUC mean", "CPU wall time (1 thread)"],
        [["same as the first table, scored with an EMA of the weights (decay {config.ema_decay}, "
          "from {config.ema_start:pct} of the steps), fold seed {config.seed}", "{oof_pauc:.4f}",
          "{oof_auc:.3f}", "{mean_fold_pauc:.4f}", "{seconds:dur}"]]),
    "vision-real-dev-earlier": earlier_real_dev("vision_real_dev_notta.json", "tta_flip=false"),
    "vision-real-dev-400": earlier_real_dev("vision_real_dev_steps400.json",
                                           "steps=400 tta_flip=false"),
    "fusion-recipes": Table(
        "fusion.json", "python benchmarks/bench_fusion.py",
        ["fold seed", "lgbm (tabular input)", "fused, residual (`make all`)",
         "fused, from image-only", "fused − lgbm", "fused − from image-only",
         "folds (of 5) fused > from image-only", "Spearman with `logit_image`: fused / "
         "from image-only / fused image term alone"],
        [["{@key}", "{@.lgbm.oof_pauc:.4f}", "**{@.vision_fused.oof_pauc:.4f}**",
          "{@.vision_fromimg.oof_pauc:.4f}", "{@.gains.fused_minus_lgbm:+.4f}",
          "{@.gains.fused_minus_fromimg:+.4f}", "{@.gains.folds_fused_above_fromimg}",
          "{@.vision_fused.spearman_logit_image:.3f} / "
          "{@.vision_fromimg.spearman_logit_image:.3f} / "
          "{@.vision_fused_image_part.spearman_logit_image:.3f}"]], each="seeds"),
    "image-ceiling": Table(
        "ceiling.json", CEIL,
        ["fold seed", "lgbm", "fused (`make all`)", "fused − lgbm",
         "best blend lgbm + fused image term (− lgbm)", "best blend lgbm + image-only (− lgbm)",
         "best blend lgbm + perfect veil reader (− lgbm)",
         "Spearman with veil share: fused image term / image-only"],
        [["{@key}", "{@.lgbm:.4f}", "{@.vision_fused:.4f}", "**{@.fused_minus_lgbm:+.4f}**",
          "{@.vision_fused_image_part.best_blend:.4f} "
          "({@.vision_fused_image_part.blend_minus_lgbm:+.4f})",
          "{@.vision_imgonly.best_blend:.4f} ({@.vision_imgonly.blend_minus_lgbm:+.4f})",
          "{@.perfect_reader.best_blend:.4f} (**{@.perfect_reader.blend_minus_lgbm:+.4f}**)",
          "{@.vision_fused_image_part.spearman_veil:.3f} / "
          "{@.vision_imgonly.spearman_veil:.3f}"]], each="ceiling"),
    "image-recipes": Table(
        "ceiling.json", CEIL,
        ["fused recipe (fold 0 of fold seed 0)", "overrides", "fused pAUC", "image term alone",
         "Spearman of the image term with veil share / `logit_image`"],
        [["`{@key}`", "{@.overrides}", "{@.fold0_pauc:.4f}", "{@.image_part_pauc:.4f}",
          "**{@.image_part_spearman_veil:.3f}** / {@.image_part_spearman_logit_image:.3f}"]],
        each="recipes"),
    "image-dense": Table(
        "ceiling.json", CEIL,
        ["resnet18, 64 px, 240 steps of 32, trained on", "Spearman with veil share (fold 0)"],
        [["the label (1 % positives; all positives + 10x negatives)",
          "{dense.label.spearman_veil:.3f}"],
         ["the veil share itself (dense, oracle)", "**{dense.veil_share.spearman_veil:.3f}**"]]),
    "colour-constancy-runs": Table(
        "colour_constancy.json", COLOUR,
        ["run", "Shades of Gray", "fold seed", "OOF pAUC", "OOF AUC", "fold pAUC mean"],
        [["`{@key}`", "{@.color_constancy}", "{@.seed}", "{@.oof_pauc:.4f}", "{@.oof_auc:.3f}",
          "{@.mean_fold_pauc:.4f}"]], each="runs"),
    "colour-constancy": Table(
        "colour_constancy.json", COLOUR,
        ["colour constancy", "fold seeds", "OOF pAUC, mean ± sd", "fold pAUC mean, mean ± sd"],
        [["off", "{off.oof_pauc.seeds}", "**{off.oof_pauc.mean:.4f} ± {off.oof_pauc.sd:.4f}**",
          "{off.mean_fold_pauc.mean:.4f} ± {off.mean_fold_pauc.sd:.4f}"],
         ["on (Shades of Gray, p = 6)", "{on.oof_pauc.seeds}",
          "{on.oof_pauc.mean:.4f} ± {on.oof_pauc.sd:.4f}",
          "{on.mean_fold_pauc.mean:.4f} ± {on.mean_fold_pauc.sd:.4f}"],
         ["**on − off**, paired by fold seed", "{difference.oof_pauc.seeds}",
          "**{difference.oof_pauc.mean:+.4f} ± {difference.oof_pauc.sd:.4f}**",
          "{difference.mean_fold_pauc.mean:+.4f} ± {difference.mean_fold_pauc.sd:.4f}"]]),
}
