"""The clinician web app (``make app``): one lesion crop in, a probability, its Grad-CAM and the
model's sensitivity / specificity at the configured threshold out.

``inputs`` checks uploads and metadata, ``service`` scores them with the saved models (no web
code), ``page`` is the Gradio page and the ``isic app`` stage.
"""
