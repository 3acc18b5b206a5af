"""isicstack: ISIC 2024 (SLICE-3D) metadata + crops -> GBDT -> CNN -> stack -> submission.

The repository root is the ``isicstack`` package; its sub-packages are the top-level folders,
one room each, in four layers (interfaces ``pipelines``, ``app``; commands ``evaluation``,
``explain``, ``inference``, ``ingest``, ``calibration``; stages ``tabular``, ``vision``,
``stacking``, ``synthetic``; kernel ``features``, ``ledger``, ``settings``, ``conditions``,
``extras``, ``data``: README, Development, the room table).
"""

__version__ = "0.1.0"
