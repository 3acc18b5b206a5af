"""Grad-CAM for the image stage: heatmaps of the regions that drove an image model's score.

``cam`` computes the maps (the ``grad-cam`` library, optional extra ``explain``), ``explain``
is the ``isic explain`` stage, ``figures`` renders overlays and the report's grid.
"""
