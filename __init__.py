"""isicstack: ISIC 2024 (SLICE-3D) metadata + crops -> GBDT -> CNN -> stack -> submission.

The repository root is the ``isicstack`` package; its sub-packages are the top-level folders,
one room each (``data``, ``features``, ``tabular``, ``vision``, ``stacking``, ``inference``,
``explain``, ``ingest``, ``evaluation``, ``app``, ``pipelines``; the layers they import along:
README, Development).
"""

__version__ = "0.1.0"
