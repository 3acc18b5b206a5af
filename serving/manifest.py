"""A bundle's manifest (``bundle.json``): its content hash, reading it, checking the files.

Light on purpose (no torch, no MLflow): the registry, the scorer and the monitor check a bundle
folder before they trust it, and the monitor loads no model library.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from isicstack.data.io import DataError, read_json_object
from isicstack.data.provenance import file_sha256

BUNDLE_FILE = "bundle.json"
REFERENCE_FILE = "reference.json"
FORMAT = 1
RESEARCH_USE = "research use, not a medical device"
REQUIRED = ("format", "name", "version", "content_hash", "files", "scorers")


class BundleError(DataError):
    """A folder that is not a bundle, or whose files differ from its manifest (named)."""


def content_hash(files: dict[str, dict[str, Any]]) -> str:
    """SHA-256 over the sorted ``path<TAB>sha256`` lines of ``files`` (the packager's files:
    ``artifacts/...`` and ``predict.yaml``): equal models, equal hash, whenever built."""
    lines = "".join(f"{path}\t{files[path]['sha256']}\n" for path in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def read_bundle(folder: str | Path) -> dict[str, Any]:
    """``bundle.json`` of ``folder``, its required keys checked (errors name the file)."""
    path = Path(folder) / BUNDLE_FILE
    try:
        doc = read_json_object(path, "not a bundle (no such file); build one with `isic "
                               "bundle` (make bundle)")
    except (FileNotFoundError, ValueError) as err:
        raise BundleError(str(err)) from err
    missing = [k for k in REQUIRED if not isinstance(doc, dict) or k not in doc]
    if missing:
        raise BundleError(f"{path}: missing key(s) {missing}")
    if doc["format"] != FORMAT:
        raise BundleError(f"{path}: format {doc['format']!r}, this code reads format {FORMAT}")
    if "full" not in doc["scorers"]:
        raise BundleError(f"{path}: scorers.full is missing")
    return doc


def verify(folder: str | Path) -> dict[str, Any]:
    """The manifest of ``folder`` once every listed file is there with its size and SHA-256
    and the content hash matches; a :class:`BundleError` naming the first difference."""
    folder = Path(folder)
    doc = read_bundle(folder)
    for rel, entry in sorted(doc["files"].items()):
        path = folder / rel
        if not path.is_file():
            raise BundleError(f"{folder}: {rel} is listed in {BUNDLE_FILE} but missing")
        if path.stat().st_size != entry["bytes"] or file_sha256(path) != entry["sha256"]:
            raise BundleError(f"{folder}: {rel} differs from its SHA-256 in {BUNDLE_FILE}")
    if content_hash(doc["files"]) != doc["content_hash"]:
        raise BundleError(f"{folder}: content_hash of {BUNDLE_FILE} does not match its files")
    ref = doc.get("reference")
    if ref and (not (folder / ref["file"]).is_file()
                or file_sha256(folder / ref["file"]) != ref["sha256"]):
        raise BundleError(f"{folder}: {ref['file']} is missing or differs from its SHA-256 in "
                          f"{BUNDLE_FILE}")
    return doc
