"""The tables of BENCHMARKS.md about quality and claims: what each shows and which results
file it reads (run time, memory and size: ``page_tables_scale.py``).

``render.py`` turns each :class:`Table` into markdown (see its docstring for the template
syntax and how to add a table); ``plan.py`` lists the command that writes each results file.
"""

from __future__ import annotations

from table_spec import CLAIM_HEADER, Table, claim_row

DATA = "python benchmarks/bench_data.py"
SYNTH = "python benchmarks/bench_synth.py"
TAB = "python benchmarks/bench_tabular.py"
PIPE = "python benchmarks/bench_pipeline.py --seeds 0 1 2"
SETTINGS = "python benchmarks/bench_settings.py --seeds 42 43 44"
FUSION = "python benchmarks/bench_fusion.py"
CALIB = "python benchmarks/bench_calibration.py --seeds 0 1 2"
CEIL = "python benchmarks/bench_ceiling.py"
TABLES: dict[str, Table] = {
    "quality-synthetic": Table(
        "quality.json", "python benchmarks/bench_quality.py",
        ["model (OOF file)", "OOF pAUC", "OOF AUC", "fold pAUC mean ± sd", "share of oracle",
         "conditions its run recorded"],
        [["`{@key}`", "{@.oof_pauc:.4f}", "{@.oof_auc:.3f}",
          "{@.fold_pauc_mean:.4f} ± {@.fold_pauc_std:.4f}", "{@.share_of_oracle:pct}",
          "{@.conditions?:cond}"]],
        each="models"),
    "quality-oracle": Table(
        "quality.json", "python benchmarks/bench_quality.py",
        ["data", "rows", "positives", "patients", "oracle pAUC (true probabilities)"],
        [["`{data_dir}`", "{rows:int}", "{positives:int}", "{patients:int}",
          "**{oracle_pauc:.4f}**"]]),
    "tabular-real-dev": Table(
        "tabular.json", TAB,
        ["configuration", "model", "OOF pAUC, mean over fold seeds 0, 1, 2 [95% "
         "patient-bootstrap CI]", "sd over seeds"],
        [["`raw` + `categorical` groups", "LightGBM",
          "{real_dev.raw_categorical_lgbm.lgbm.pooled.oof_pauc:.4f} "
          "[{real_dev.raw_categorical_lgbm.lgbm.pooled.ci.0:.4f}, "
          "{real_dev.raw_categorical_lgbm.lgbm.pooled.ci.1:.4f}]",
          "{real_dev.raw_categorical_lgbm.lgbm.sd:.4f}"],
         ["full feature set (raw, lesion, patient, ugly duckling, categorical)", "LightGBM",
          "{real_dev.full_config.lgbm.pooled.oof_pauc:.4f} "
          "[{real_dev.full_config.lgbm.pooled.ci.0:.4f}, "
          "{real_dev.full_config.lgbm.pooled.ci.1:.4f}]", "{real_dev.full_config.lgbm.sd:.4f}"],
         ["full feature set", "XGBoost",
          "{real_dev.full_config.xgb.pooled.oof_pauc:.4f} "
          "[{real_dev.full_config.xgb.pooled.ci.0:.4f}, "
          "{real_dev.full_config.xgb.pooled.ci.1:.4f}]", "{real_dev.full_config.xgb.sd:.4f}"]]),
    "tabular-real-dev-claims": Table(
        "tabular.json", TAB, CLAIM_HEADER,
        [claim_row("LightGBM: full feature set (B) vs `raw` + `categorical` (A)",
                   "real_dev.comparisons.full_vs_raw_categorical_lgbm")]),
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
    "tune-tuned": Table(
        "tune.json", "python benchmarks/bench_tune.py --parts tuned", CLAIM_HEADER,
        [claim_row("LightGBM `bags=1`: the sweep's best trial (B) vs untuned (A), fold seeds "
                   "0-4 (the sweep chose on 42)", "tuned_vs_default")]),
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
        ["goal", "figure, mean ± sd over fold seeds", "met on every seed"],
        [["image-only (`vision_imgonly`) OOF pAUC >= 0.10 on each fold seed",
          "{summary.models.vision_imgonly.pauc.mean:.4f} ± "
          "{summary.models.vision_imgonly.pauc.sd:.4f}",
          "{summary.goals_met_every_seed.image_only_ge_010}"]]),
    "pipeline-claims": Table(
        "pipeline.json", PIPE, CLAIM_HEADER,
        [claim_row("nested stack (B) vs its best single input (A: `{comparisons.best_input}`)",
                   "comparisons.stack_vs_best_input"),
         claim_row("second GBDT pass `lgbm_img` (B) vs first `lgbm` (A)",
                   "comparisons.lgbm_img_vs_lgbm"),
         claim_row("second GBDT pass `xgb_img` (B) vs first `xgb` (A)",
                   "comparisons.xgb_img_vs_xgb"),
         claim_row("fused CNN `vision_fused` (B) vs its tabular input `lgbm` (A)",
                   "comparisons.fused_vs_lgbm")]),
    "pipeline-stack": Table(
        "pipeline.json", PIPE,
        ["stack CV", "OOF pAUC, mean ± sd over fold seeds"],
        [["nested: each fold scored by the method chosen on the other folds (`oof/stack`)",
          "**{summary.models.stack.pauc.mean:.4f}** ± {summary.models.stack.pauc.sd:.4f}"],
         ["best of the 4 methods, chosen on the same OOF scores (optimistic; what the "
          "stack reported before)", "{summary.stack_best_of_methods.mean:.4f} ± "
          "{summary.stack_best_of_methods.sd:.4f}"]]),
    "pipeline-times": Table(
        "pipeline.json", PIPE,
        ["`make` target", "wall time, mean ± sd over fold seeds"],
        [["`{@key}`", "{@.mean:dur} ± {@.sd:dur}"]], each="summary.stages"),
    "pipeline-total": Table(
        "pipeline.json", PIPE,
        ["", "wall time", "oracle pAUC (true probabilities)", "machine",
         "load average (1 min) at the end of the chain of seed {runs.0.seed} / {runs.1.seed} / "
         "{runs.2.seed}"],
        [["**total of the chain** (`make all` before the cuts, every stage at 1 thread; data "
          "already generated)",
          "**{summary.total_seconds.mean:dur}** ± {summary.total_seconds.sd:dur}",
          "{summary.oracle_pauc.mean:.4f}", "{machine}",
          "{runs.0.loadavg_end.0:.1f} / {runs.1.loadavg_end.0:.1f} / "
          "{runs.2.loadavg_end.0:.1f}"]]),
    "fusion-recipes": Table(
        "fusion.json", FUSION,
        ["fold seed", "lgbm (tabular input)", "fused, residual (the chains above: `make all` "
         "before the cuts)", "fused, from image-only (`make all` since the cuts)",
         "Spearman with `logit_image`: fused / from image-only / "
         "fused image term alone"],
        [["{@key}", "{@.lgbm.oof_pauc:.4f}", "**{@.vision_fused.oof_pauc:.4f}**",
          "{@.vision_fromimg.oof_pauc:.4f}",
          "{@.vision_fused.spearman_logit_image:.3f} / "
          "{@.vision_fromimg.spearman_logit_image:.3f} / "
          "{@.vision_fused_image_part.spearman_logit_image:.3f}"]], each="seeds"),
    "fusion-claims": Table(
        "fusion.json", FUSION, CLAIM_HEADER,
        [claim_row("residual fused (B) vs from image-only (A)", "comparisons.fused_vs_fromimg"),
         claim_row("from image-only (B) vs `lgbm` (A)", "comparisons.fromimg_vs_lgbm")]),
    "image-ceiling": Table(
        "ceiling.json", CEIL,
        ["fold seed ({machines.ceiling})", "lgbm", "fused (residual: the chains above)",
         "fused − lgbm",
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
        ["fused recipe (fold 0 of fold seed 0's earlier chain; one run each; "
         "{machines.recipes})", "overrides", "fused pAUC", "image term alone",
         "Spearman of the image term with veil share / `logit_image`"],
        [["`{@key}`", "{@.overrides}", "{@.fold0_pauc:.4f}", "{@.image_part_pauc:.4f}",
          "**{@.image_part_spearman_veil:.3f}** / {@.image_part_spearman_logit_image:.3f}"]],
        each="recipes"),
    "image-dense": Table(
        "ceiling.json", CEIL,
        ["resnet18, 64 px, 240 steps of 32, trained on (one run each; {machines.dense})",
         "Spearman with veil share (fold 0)"],
        [["the label (1 % positives; all positives + 10x negatives)",
          "{dense.label.spearman_veil:.3f}"],
         ["the veil share itself (dense, oracle)", "**{dense.veil_share.spearman_veil:.3f}**"]]),
    "settings-runs": Table(
        "real_dev_settings.json", SETTINGS,
        ["run", "setting", "fold seed", "OOF pAUC [95% patient-bootstrap CI]", "OOF AUC",
         "fold pAUC mean", "torch threads", "wall time"],
        [["`{@key}`", "{@.setting}", "{@.seed}",
          "{@.oof_pauc:.4f} [{@.oof_pauc_ci.0:.4f}, {@.oof_pauc_ci.1:.4f}]", "{@.oof_auc:.3f}",
          "{@.mean_fold_pauc:.4f}", "{@.threads}", "{@.seconds:dur}"]], each="runs"),
    "settings": Table(
        "real_dev_settings.json", SETTINGS,
        ["setting", "what", "fold seeds", "OOF pAUC, mean over seeds [95% patient-bootstrap "
         "CI]", "sd over seeds", "fold pAUC mean, mean ± sd"],
        [["`{@key}`", "{@.meaning}", "{@.seeds}",
          "**{@.pooled.oof_pauc:.4f}** [{@.pooled.ci.0:.4f}, {@.pooled.ci.1:.4f}]",
          "{@.oof_pauc.sd:.4f}", "{@.mean_fold_pauc.mean:.4f} ± {@.mean_fold_pauc.sd:.4f}"]],
        each="settings"),
    "settings-claims": Table(
        "real_dev_settings.json", SETTINGS, CLAIM_HEADER,
        [claim_row("Shades of Gray colour constancy (B) vs off (A)", "comparisons.colour"),
         claim_row("EMA of the weights (B) vs off (A)", "comparisons.ema")]),
    "calibration": Table(
        "calibration.json", CALIB,
        ["model (Platt map after the prior correction; {conditions?:cond})", "Brier raw",
         "Brier calibrated "
         "(nested OOF)", "calibrated / oracle", "best monotone map / oracle (floor)",
         "<= 1.10 x oracle on every seed"],
        [["`{@key}`", "{@.brier_raw.mean:.5f}", "**{@.brier_calibrated.mean:.5f}**",
          "{@.ratio.mean:.3f} ± {@.ratio.sd:.3f}", "{@.floor_ratio.mean:.3f}",
          "{@.goal_met_every_seed}"]], each="summary.platt"),
    "calibration-stack": Table(
        "calibration.json", CALIB,
        ["fold seed", "stack Brier, calibrated [95% patient-bootstrap CI]",
         "oracle Brier [CI]", "calibrated / oracle [CI]", "log loss calibrated / oracle",
         "calibration slope calibrated / oracle"],
        [["{@key}", "**{@.platt.models.stack.calibrated.brier:.5f}** "
          "[{@.platt.models.stack.calibrated.brier_ci.0:.5f}, "
          "{@.platt.models.stack.calibrated.brier_ci.1:.5f}]",
          "{@.platt.models.stack.oracle.brier:.5f} [{@.platt.models.stack.oracle.brier_ci.0:.5f}, "
          "{@.platt.models.stack.oracle.brier_ci.1:.5f}]",
          "{@.platt.models.stack.ratio:.3f} [{@.platt.models.stack.ratio_ci.0:.3f}, "
          "{@.platt.models.stack.ratio_ci.1:.3f}]",
          "{@.platt.models.stack.log_loss.calibrated:.4f} / "
          "{@.platt.models.stack.log_loss.oracle:.4f}",
          "{@.platt.models.stack.slope.calibrated:.3f} / {@.platt.models.stack.slope.oracle:.3f}"
          ]], each="seeds"),
    "calibration-real-dev": Table(
        "calibration.json", CALIB,
        ["model (real-dev, {real_dev.rows:int} rows, {real_dev.positives} positives)",
         "Brier raw [95% CI]", "Brier calibrated [CI]", "calibrated − raw [CI]",
         "calibration slope raw / calibrated"],
        [["`{@key}`", "{@.raw.brier:.4f} [{@.raw.brier_ci.0:.4f}, {@.raw.brier_ci.1:.4f}]",
          "{@.calibrated.brier:.4f} [{@.calibrated.brier_ci.0:.4f}, "
          "{@.calibrated.brier_ci.1:.4f}]", "[{@.change_ci.0:+.4f}, {@.change_ci.1:+.4f}]",
          "{@.slope.raw:.3f} / {@.slope.calibrated:.3f}"]], each="real_dev.models"),
    "single-lesion": Table(
        "single_lesion.json", "python benchmarks/bench_single_lesion.py",
        ["submitted model `{submitted}`, {rows:int} held-out lesions of {patients} patients "
         "({positives} positives), scored alone vs inside their patient; "
         "{conditions?:cond}", "figure"],
        [["calibrated risk shift, median / 90th percentile (absolute)",
          "{summary.risk_abs_median:pct} / {summary.risk_abs_p90:pct}"],
         ["lesions whose review flag (operating point at 80 % TPR) changes",
          "{summary.flag_changed:pct}"],
         ["test pAUC inside the patient / alone [95% CI of the difference]",
          "{summary.test_pauc_inside:.4f} / {summary.test_pauc_alone:.4f} "
          "[{summary.test_pauc_diff_ci.0:+.4f}, {summary.test_pauc_diff_ci.1:+.4f}]"],
         ["only the app's form fields filled in: risk shift median / flag changes",
          "{summary.form_only_risk_abs_median:pct} / {summary.form_only_flag_changed:pct}"]]),
}
