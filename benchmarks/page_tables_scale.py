"""The tables of BENCHMARKS.md about run time, memory and size: the loader, the image stage's
throughput, offline inference, the full-size chain, `make all` on a fresh clone, the run
ledger's cost (quality and claims: ``page_tables.py``)."""

from __future__ import annotations

from table_spec import CLAIM_HEADER, Table, claim_row

MAKEALL = "python benchmarks/bench_makeall.py"
RUNS = ["today_2core", "fast_2core", "fast_nocompile_2core", "fast_1core"]  # makeall.json keys
TARGETS = ["install", "data", "folds", "train-tabular", "train-image-only", "train-image",
           "train-tabular-image", "stack", "calibrate", "report"]

# makeall.json's float32 run: every target of today's `make all`, in order
F32_TARGETS = [*TARGETS[:7], "train-tabular-solo", *TARGETS[7:]]
# float32.json's rows (bench_float32.py): label, key with {cl} for the memory format
F32_ROWS = [("training step, batch 32, 1 thread", "train/t1/cl{cl}/b32"),
            ("training step, batch 32, 2 threads", "train/t2/cl{cl}/b32"),
            ("training step, batch 64, 2 threads", "train/t2/cl{cl}/b64"),
            ("scoring, batch 64, 2 threads", "score/t2/cl{cl}/b64"),
            ("scoring, batch 256, 1 thread", "score/t1/cl{cl}/b256"),
            ("scoring, batch 256, 2 threads", "score/t2/cl{cl}/b256")]



def _f32_cell(run: str, key: str) -> str:
    """crops/s, achieved GFLOP/s and its ratio to the GEMM rate of one float32.json row."""
    row = f"{run}.rows.{key}"
    return f"{{{row}.crops_per_s:.0f}}, {{{row}.gflop_per_s:.1f}}, **{{{row}.ratio:.2f}}**"


TABLES: dict[str, Table] = {
    "vision-cpu": Table(
        "vision_cpu.json", "python benchmarks/bench_vision.py",
        ["{n_images:int} {source} crops; {env.conditions?:cond}; {env.cpus} cores, torch "
         "threads as each row says, load average {env.loadavg_before.0:.1f} at the start",
         "64 px", "128 px"],
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
    "inference": Table(
        "inference.json", "python benchmarks/bench_inference.py",
        ["models scored: {models}, image model trained on {image_folds_trained} fold(s); "
         "{machine}", "{runs.10000.rows:int} test rows", "{runs.100000.rows:int} test rows"],
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
    "tracking": Table(
        "tracking.json", "python benchmarks/bench_tracking.py",
        ["smoke chain ({machine}), {processes} stage processes", "seconds"],
        [["inside tracking calls, all stage runs (mlflow import, store, params, metrics, "
          "tags, artifacts, the image folds' Lightning logger)", "**{total_tracking_seconds}**"],
         ["of which the first run, which creates the store", "{store_creation_run_seconds}"],
         ["the stage processes' whole wall time, for scale", "{total_stage_process_seconds}"],
         ["share of the `bench_pipeline.py` chains' mean total ({make_all_seconds:dur}: "
          "`make all` before the cuts, every stage at 1 thread, beside other jobs; not today's "
          "`make all`; goal < 3 %)", "**{share_of_make_all:pct}**"]]),
    "loader": Table(
        "loader.json", "python benchmarks/bench_loader.py",
        ["{n_images:int} real-dev crops (median {crop_px_median:.0f} px) -> {image_size} px, "
         "`{augment}` augmentation, batch {batch}, no decode cache; {conditions.cpu_model}, "
         "{conditions.cpu_count} cores, load average (1 min) {loadavg_before.0} before / "
         "{loadavg_after.0} after", "img/s",
         "per worker / bare decode"],
        [["bare decode from memory, one process", "{bare_decode_img_s:int}", "1"],
         ["whole path (HDF5 read, decode, augmentation, collate), 1 worker",
          "**{loaders.1_workers.img_s:int}**", "{loaders.1_workers.per_worker_over_bare_decode}"],
         ["the same, before this change, 1 worker", "{loaders.1_worker_code_before.img_s:int}",
          "{loaders.1_worker_code_before.per_worker_over_bare_decode}"],
         ["whole path, 2 workers (as many as the cores; *loaded*)",
          "{loaders.2_workers.img_s:int}",
          "{loaders.2_workers.per_worker_over_bare_decode}"],
         ["HDF5 read + decode alone, a key's first read / a repeat read", "",
          "{read_decode_over_bare_decode.first_read} / "
          "{read_decode_over_bare_decode.repeat_read}"],
         ["`augment_on: device` (the `full` profile): crops located once, each decoded straight "
          "into the batch by 1 decode thread, augmentation left to the device (median of paired "
          "rounds)", "**{loaders.device_1_workers.img_s:int}**",
          "**{loaders.device_1_workers.per_worker_over_bare_decode}**"],
         ["the same, 2 decode threads (the training process's thread shares the 2 cores)",
          "{loaders.device_2_workers.img_s:int}",
          "{loaders.device_2_workers.per_worker_over_bare_decode}"],
         ["the same through 1 worker process (the decoded pixels sent via shared memory)",
          "{loaders.device_1_process.img_s:int}",
          "{loaders.device_1_process.per_worker_over_bare_decode}"]]),
    "loader-stages": Table(
        "loader.json", "python benchmarks/bench_loader.py",
        ["per crop (µs)", "read (first / again; h5py `f[key][()]`)", "decode", "to tensor",
         "random resized crop + flips", "whole `strong` transform (before)", "collate",
         "locate once (index)", "packed collate", "batch `strong` on this CPU, 1 thread"],
        [["", "{stage_us.read_store_first} / {stage_us.read_store_again} "
          "({stage_us.read_h5py_f_key})", "{stage_us.decode}", "{stage_us.to_tensor}",
          "{stage_us.geometry_rrc_flips}", "{stage_us.strong_transform} "
          "({stage_us.strong_transform_before})", "{stage_us.collate}",
          "{stage_us.index_per_key}", "{stage_us.collate_padded}",
          "{stage_us.batch_augment_strong_cpu}"]]),
    "fullsize": Table(
        "fullsize.json", "python benchmarks/bench_fullsize.py",
        ["stage (`{profile}` profile: {what})", "wall time", "peak RSS (MiB)"],
        [["`{@key}`", "{@.seconds:dur}", "{@.peak_rss_mib:int}"]], each="stages"),
    "fullsize-total": Table(
        "fullsize.json", "python benchmarks/bench_fullsize.py",
        ["", "figure"],
        [["stages finished, wall time in all", "{total_seconds:dur}"],
         ["largest peak RSS of any stage (goal < 20 GB)", "**{max_peak_rss_mib:int} MiB**"],
         ["`isic predict` on the 100,000 test rows: the first record (the fused CNN scored "
          "twice per crop) / re-measured at {stages.predict.commit} (once)",
          "{previous.predict.seconds:dur} / {stages.predict.seconds:dur}"],
         ["`isic predict` projected to 500,000 test rows (linear in rows, the re-measured run)",
          "{projection.seconds_500k:dur}"],
         ["machine", "{conditions.cpu_model}, {conditions.cpu_count} cores, bf16 "
          "{conditions.cpu_bf16}"]]),
    "makeall-claims": Table(
        "makeall.json", MAKEALL, CLAIM_HEADER,
        [claim_row("stack (nested CV): with the cuts (B) vs before (A)", "quality.stack"),
         claim_row("second pass LightGBM `lgbm_img`", "quality.lgbm_img"),
         claim_row("second pass XGBoost `xgb_img`", "quality.xgb_img"),
         claim_row("fused CNN `vision_fused`: 60 steps from the image-only models (B) vs "
                   "240 from random init (A)", "quality.vision_fused")]),
    "makeall-reproduce": Table(
        "makeall.json", MAKEALL,
        ["fold seed", "OOF rows", "max abs difference, fused OOF today vs earlier session",
         "identical"],
        [[f"{seed}", f"{{reproduce.{seed}.rows:int}}", f"{{reproduce.{seed}.max_abs_diff:g}}",
          f"{{reproduce.{seed}.identical}}"] for seed in (0, 1, 2)]),
    "identical": Table(
        "identical.json", "python benchmarks/bench_identical.py",
        ["`make all PROFILE={profile}`, fresh clones, 1 core (1 thread) each", "figure"],
        [["before the redesign / after it", "{before.commit} / {after.commit}"],
         ["the two generated the same synthetic data", "{same_data}"],
         ["prediction files compared (OOF and test scores of every model, stack, "
          "calibration, submission.csv)", "{files_compared:int}"],
         ["byte-identical", "**{identical:int}**"],
         ["written by one commit only", "{only_before} / {only_after}"]]),
    "makeall-time": Table(
        "makeall.json", MAKEALL,
        ["fresh clone, `make` target", "2 cores, before the cuts ({time_today_2core.commit})",
         "2 cores, with the cuts ({time_fast_2core.commit})",
         "2 cores, with the cuts + `--no-compile` ({time_fast_nocompile_2core.commit})",
         "1 core (`taskset`), with the cuts + `--no-compile` ({time_fast_1core.commit})"],
        [[f"`{t}`" if t != "install" else "`make setup` (install)",
          *(f"{{time_{r}.seconds.{t}:dur}}" for r in RUNS)] for t in TARGETS]
        + [["**total, install included** (goal on 2 cores: 15 min)",
            *(f"**{{time_{r}.total_seconds:dur}}**" for r in RUNS)],
           ["stack OOF pAUC of that run (fold seed 42)",
            *(f"{{time_{r}.stack_oof_pauc:.4f}}" for r in RUNS)],
           ["machine", *(f"{{time_{r}.conditions.cpu_model}}, bf16 "
                         f"{{time_{r}.conditions.cpu_bf16}}" for r in RUNS)]]),
    "makeall-profile": Table(
        "makeall.json", MAKEALL,
        ["inside the 2-core run", "stage seconds", "features", "GBDT fit", "crop decoding",
         "CNN training", "CNN scoring"],
        [["`{@key}`", "{@.seconds}", "{@.features_seconds}", "{@.fit_seconds}",
          "{@.crops_seconds}", "{@.train_seconds}", "{@.score_seconds}"]],
        each="time_fast_2core.profile"),
    "makeall-float32": Table(
        "makeall.json", MAKEALL + " --part time --label float32",
        ["fresh clone ({time_float32_2core.commit}), `make` target, 2 cores",
         "seconds (float32: {time_float32_2core.conditions:cond})"],
        [[f"`{t}`" if t != "install" else "`make setup` (install)",
          f"{{time_float32_2core.seconds.{t}:dur}}"] for t in F32_TARGETS]
        + [["**total, install included** (goal: 15 min)",
            "**{time_float32_2core.total_seconds:dur}**"],
           ["stack OOF pAUC of that run (fold seed 42)",
            "{time_float32_2core.stack_oof_pauc:.4f}"]]),
    "makeall-float32-cnn": Table(
        "makeall.json", MAKEALL + " --part time --label float32",
        ["CNN stage of that run", "stage seconds", "training", "scoring", "optimizer steps "
         "(all folds) x batch", "training crops/s", "achieved GFLOP/s in training",
         "÷ the CPU's float32 GEMM rate"],
        [["`{@key}`", "{@.seconds:.0f}", "{@.train_seconds:.0f}", "{@.score_seconds:.0f}",
          "{@.steps} x {@.batch}", "{@.train_crops_per_s:.0f}", "{@.achieved_gflop_per_s?}",
          "**{@.gemm_ratio?}**"]],
        each="time_float32_2core.cnn"),
    "maketest": Table(
        "maketest.json", "python benchmarks/bench_maketest.py",
        ["fresh clone, {cores} cores (`taskset`), one after the other; {conditions:cond}",
         "one process (af608b3)", "pytest-xdist, a worker per core (HEAD: {runs.HEAD.commit})"],
        [["`make setup` (install)", "{runs.af608b3.install_seconds:dur}",
          "{runs.HEAD.install_seconds:dur}"],
         ["**`make test`** (goal: 4 min)", "**{runs.af608b3.test_seconds:dur}**",
          "**{runs.HEAD.test_seconds:dur}**"],
         ["pytest's summary", "{runs.af608b3.pytest_summary}", "{runs.HEAD.pytest_summary}"],
         ["test ids collected", "{runs.af608b3.n_ids}", "{runs.HEAD.n_ids}"],
         ["the same ids (the lists: `maketest.json`)", "**{same_ids}**", "**{same_ids}**"],
         ["load average at the start of `make test`", "{runs.af608b3.loadavg_start.0:.2f}",
          "{runs.HEAD.loadavg_start.0:.2f}"]]),
    "float32": Table(
        "float32.json", "python benchmarks/bench_float32.py",
        ["{native.model} at {native.image_size} px, float32, one batch in memory; "
         "{native.conditions:cond}; the CPU's own float32 GEMM: {native.gemm_gflop_per_s.t1:.0f} "
         "GFLOP/s at 1 thread, {native.gemm_gflop_per_s.t2:.0f} at 2",
         "contiguous (today's float32 default): crops/s, GFLOP/s, ÷ GEMM",
         "channels_last: crops/s, GFLOP/s, ÷ GEMM", "channels_last speed-up"],
        [[label, *(_f32_cell("native", key.format(cl=c)) for c in (0, 1)),
          f"{{native.channels_last_speedup.{key.replace('/cl{cl}', '')}:.2f}}x"]
         for label, key in F32_ROWS]
        + [["the same with `ONEDNN_MAX_CPU_ISA=AVX2`: training, batch 32, 2 threads",
            *(_f32_cell("avx2", f"train/t2/cl{c}/b32") for c in (0, 1)),
            "{avx2.channels_last_speedup.train/t2/b32:.2f}x"]]),
}
