"""The clinician web app (``make app``): one lesion crop in, a calibrated risk (``isic
calibrate``), its Grad-CAM and the model's sensitivity / specificity at the configured threshold
out; or one patient's lesions (a CSV and their crops) scored together.

``validate`` checks uploads and metadata, ``patient`` a patient's CSV and the one-lesion warning,
``service`` scores them with the saved models (no web code), ``page`` is the Gradio page and
the ``isic app`` stage.
"""
