"""isicstack: ISIC 2024 (SLICE-3D) metadata + crops -> GBDT -> CNN -> stack -> submission.

The repository root is the ``isicstack`` package; its sub-packages are the top-level folders
(``data``, ``features``, ``tabular``, ``vision``, ``stacking``, ``pipelines``).
"""

__version__ = "0.1.0"
