"""The image stage's config (``configs/image.yaml``): run identity and I/O at the top level, the
rest in four groups, ``model``, ``optim``, ``data`` and ``runtime``.

Why groups: the flat config had 45 keys mixing the network, the optimiser, the data path and the
hardware; grouped, ``isic train-image --help`` and a saved ``config.yaml`` read by topic, and a
sweep names what it tunes (``optim.lr``). Keys are dotted on the command line
(``model.name=resnet34 optim.steps=60``) and nested in YAML.

``ImageConfig.MOVED_KEYS`` maps every key of the flat config used before the groups to its new
place, once, here. Through it (:mod:`isicstack.settings.keys`), files written with the flat keys
are read as the new ones, with one warning naming the file: the YAML layers, a tuned file, a
saved run's ``config.yaml`` (prediction, Grad-CAM, the app, the Kaggle package, a resume check)
and Optuna search spaces; an old flat key on the command line is refused with its new name
(``model_name is now model.name``). Kept out of ``train.py``: it imports no torch, so the
calibration and tuning code can read a saved config cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from isicstack.settings.command import Command


@dataclass
class ModelConfig:
    """The network: which timm backbone, its starting weights, input size, head dropout."""

    name: str = "resnet18"         # timm model (test_resnet: timm's tiny test net)
    pretrained: bool = False       # timm's default weights (hub or local cache)
    pretrained_path: str = ""      # offline weights file or folder for timm
    image_size: int = 64           # model input side in px
    drop_rate: float = 0.0         # dropout before the classifier


@dataclass
class OptimConfig:
    """The fit: step budget, AdamW, schedule, loss weighting, weight averaging, validation."""

    # 240: ~4 passes over all positives + 10x fresh negatives per fold
    steps: int = 240               # optimizer steps per fold
    lr: float = 1e-3               # peak AdamW learning rate
    weight_decay: float = 1e-2     # AdamW weight decay
    backbone_lr_mult: float = 1.0  # backbone lr = lr x this (pretrained: ~0.1)
    schedule: Literal["onecycle", "cosine"] = "onecycle"  # cosine suits pretrained weights
    warmup_frac: float = 0.25      # share of the steps warming up
    pos_weight: float = 1.0        # loss weight of positive rows
    ema_decay: float = 0.0         # > 0: score with an EMA of the weights (Lightning callback)
    ema_start: float = 0.5         # share of the steps after which the EMA starts
    val_every: int = 0             # steps between subset validations (0: none)


@dataclass
class DataConfig:
    """What a step sees and how crops get there: batches, sampling, augmentation, decoding."""

    # 32: 64 costs twice the time; its effect was never measured paired
    batch_size: int = 32           # crops per optimizer step (per device)
    neg_ratio: float = 10.0        # negatives per positive, drawn anew each pass
    val_neg_ratio: float = 10.0    # negatives per positive in the validation subset
    augment: Literal["none", "flips", "strong"] = "flips"  # strong: resized crop, flips, jitter
    augment_on: Literal["loader", "device"] = "loader"  # device: on the batch after transfer
    tta_flip: bool = False         # also score a horizontally flipped pass, averaged
    # on vs off on the real-dev crops: benchmarks/bench_settings.py (the colour setting)
    color_constancy: bool = False  # Shades of Gray on every crop
    data_mode: Literal["auto", "memory", "stream"] = "auto"  # stream: decode per sample from HDF5
    cache_max_gb: float = 4.0      # auto: decode-once cache when it fits in this much memory
    on_bad_image: Literal["error", "skip"] = "error"  # skip: leave a bad crop out, list it
    # memory mode needs none; stream mode: set to the cores to spare
    num_workers: int = 0           # decode workers (augment_on device: decode threads)


@dataclass
class RuntimeConfig:
    """Where and how it runs: accelerator, processes, numeric precision, CPU threads."""

    accelerator: str = "auto"      # auto | cpu | gpu
    devices: int | str = 1         # Lightning devices (processes); data.batch_size is per device
    strategy: str = "auto"         # Lightning strategy (ddp: one process per device)
    precision: str = "auto"        # auto: bf16-mixed on GPUs and bf16 CPUs, else 32-true
    channels_last: bool | str = "auto"  # NHWC memory format; auto: on GPU or with bf16
    cpu_threads: int = 0           # 0 = cores minus loader workers


@dataclass
class ImageConfig:
    """Image stage settings (``configs/image.yaml``); see :mod:`isicstack.vision.train`."""

    COMMAND: ClassVar[Command] = Command(
        "train-image", "isicstack.vision.train",
        "timm CNN on HDF5 crops per fold, fused with the tabular OOF score", yaml="image")

    data_dir: str = "auto"  # auto: real Kaggle files if present, else datasets/synthetic/<profile>
    artifacts: str = "artifacts"   # reads folds and tabular scores; writes runs/, oof/, test/
    profile: str = "default"       # config profile in use (set by --profile)
    name: str = ""                 # outputs vision_<name>; empty = model.name
    seed: int = 42                 # seed of init and sampling (+ fold)
    folds: list[int] = field(default_factory=list)  # folds to train; empty = every fold
    n_folds: int = 5               # image-only mode: folds made from labels_path
    fusion: bool = True            # add the tabular score to the model
    tabular_name: str = "lgbm"     # tabular run whose OOF/test scores are fused
    init_from: str = ""            # image-only run (vision_<name>) to start each fold from
    images_path: str = ""          # image-only mode: an HDF5 of crops
    labels_path: str = ""          # image-only mode: CSV of isic_id, target[, patient_id]
    resume: bool = True            # continue unfinished folds when config and inputs are unchanged
    predict_test: bool = True      # false: OOF only (tuning trials)
    model: ModelConfig = field(default_factory=ModelConfig)  # the network
    optim: OptimConfig = field(default_factory=OptimConfig)  # the fit
    data: DataConfig = field(default_factory=DataConfig)  # batches, sampling, crops
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)  # hardware and precision

    # old flat key -> its key since the groups (configs written before are migrated on read)
    MOVED_KEYS: ClassVar[dict[str, str]] = {
        "model_name": "model.name", "pretrained": "model.pretrained",
        "pretrained_path": "model.pretrained_path", "image_size": "model.image_size",
        "drop_rate": "model.drop_rate",
        "steps": "optim.steps", "lr": "optim.lr", "weight_decay": "optim.weight_decay",
        "backbone_lr_mult": "optim.backbone_lr_mult", "schedule": "optim.schedule",
        "warmup_frac": "optim.warmup_frac", "pos_weight": "optim.pos_weight",
        "ema_decay": "optim.ema_decay", "ema_start": "optim.ema_start",
        "val_every": "optim.val_every",
        "batch_size": "data.batch_size", "neg_ratio": "data.neg_ratio",
        "val_neg_ratio": "data.val_neg_ratio", "augment": "data.augment",
        "tta_flip": "data.tta_flip", "color_constancy": "data.color_constancy",
        "data_mode": "data.data_mode", "cache_max_gb": "data.cache_max_gb",
        "on_bad_image": "data.on_bad_image", "num_workers": "data.num_workers",
        "accelerator": "runtime.accelerator", "devices": "runtime.devices",
        "strategy": "runtime.strategy", "precision": "runtime.precision",
        "channels_last": "runtime.channels_last", "cpu_threads": "runtime.cpu_threads",
    }
