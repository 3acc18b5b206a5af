"""isicstack.inference: scoring crops outside the training pipeline (``isic predict-images``)."""
