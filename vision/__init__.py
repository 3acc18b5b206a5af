"""isicstack.vision: timm CNN on the HDF5 crops, per fold, image-only or fused with tabular scores.

Modules: ``data`` (image sources, v2 transforms, dataset), ``datamodule`` (the per-fold
DataModule), ``batch_augment`` (``augment_on: device``: packed batches, the augmentation on the
device), ``cache``
(decode-once crops at input size), ``sampler`` (per-epoch negative undersampling), ``backbone``
(the timm network and its pretrained weights), ``model`` (the LightningModule and
``build_model``, the one factory of the network), ``fold_table`` (fold/test/fusion tables),
``prepare`` (run folder, inputs, image sources), ``fold`` (one fold: fit by a step budget,
resume, predict), ``config`` (``ImageConfig`` and its groups ``model``, ``optim``, ``data``,
``runtime``; no torch import), ``train`` (``run``).
"""
