"""``isic ingest``: other ISIC data sets (a folder of JPEGs + a CSV) in the project's layout.

The output is an HDF5 of JPEG crops keyed by id (what ``data.crops.CropStore`` reads) and a
labels table (``isic_id, target, patient_id``) that the image stage's image-only mode trains on.
"""
