"""A tiny trained image-only run (``vision_imgonly``) on the 60-crop set of ``vision_fixtures``.

Shared by the Grad-CAM, report and web-app tests: timm's ``test_resnet`` at 32 px, 3 steps per
fold, one CPU thread.
"""

from __future__ import annotations

from pathlib import Path

from vision_fixtures import image_cfg, make_vision_data

from isicstack.vision.train import run as train_image

RUN = "vision_imgonly"


def make_image_only_run(root: Path) -> dict[str, Path]:
    """The vision fixture data plus ``runs/vision_imgonly`` and ``oof/vision_imgonly``."""
    d = make_vision_data(root)
    train_image(image_cfg(d, None, {"optim.steps": 3}, fusion=False, name="imgonly"))
    return d
