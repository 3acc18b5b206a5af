"""isicstack.vision: timm CNN on the HDF5 crops, per fold, optionally fused with tabular scores.

Modules: ``data`` (dataset, transforms, per-fold DataModule), ``sampler`` (per-epoch negative
undersampling), ``model`` (LightningModule), ``inputs`` (fold/test/fusion tables), ``fold``
(one fold: fit, resume, predict), ``train`` (``ImageConfig`` and ``run``). Importing this
package sets ``HF_HUB_OFFLINE=1`` before timm is loaded: weights come from local files only,
never from a hub that retries for ~47 s.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
