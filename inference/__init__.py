"""isicstack.inference: scoring from saved runs outside training.

``isic predict`` (the offline test path), ``isic kaggle-package`` (that path shipped as one
Kaggle dataset, with ``kaggle_inference.py`` as its ``run_inference.py``) and
``isic predict-images`` (crops alone, through an image-only run). The saved maps of ``isic
calibrate`` that prediction applies are read through ``calibration.maps``.
"""
