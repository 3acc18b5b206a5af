"""``isic app`` / ``make app``: the Gradio page, bound to 127.0.0.1 unless ``host`` says otherwise.

Every outcome of a request is text in the page: a bad upload or metadata value gets its own
sentence (``app.validate``), and an unexpected error is logged with its traceback on the server
while the page only names its type. Fonts are the system's (no web-font fetch: clinic networks
are often closed).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from isicstack.app.config import AppConfig
from isicstack.app.patient import crops_by_id, read_patient_csv, render_patient
from isicstack.app.service import Clinic, Result
from isicstack.app.validate import FIELDS, InputError, parse_metadata, read_upload
from isicstack.calibration.config import OperatingPointConfig
from isicstack.extras import require
from isicstack.serving.manifest import RESEARCH_USE as NOTICE
from isicstack.serving.registry import resolve

log = logging.getLogger(__name__)


def _rate(op: dict[str, Any], key: str) -> str:
    text = f"{op['point'][key]:.3f}"
    if key in op["ci_low"]:
        text += f" (95% CI {op['ci_low'][key]:.3f}-{op['ci_high'][key]:.3f})"
    return text


def risk_lines(result: Result) -> list[str]:
    """The calibrated risk first when there is one; else the raw score and why not."""
    what = "Probability" if result.probability else "Stack score (0-1 rank score)"
    if result.risk is None:
        return [f"### {what}: {result.score:.3f}", f"Scored by the {result.model}. The models "
                "train on rebalanced classes (negatives subsampled), so read the score against "
                "the threshold below, not as the chance of malignancy in the population. "
                f"No calibrated risk: {result.risk_note}."]
    return [f"### Calibrated risk: {100 * result.risk:.2f} %",
            f"Estimated chance that a lesion scored like this one is malignant, among lesions "
            f"like the training data's (its class mix undone, then a map fitted out of fold: "
            f"`isic calibrate`). Scored by the {result.model}; model score {result.score:.4f}."]


def render(result: Result, target_tpr: float) -> str:
    """The result as Markdown: risk or score, model, threshold, sensitivity/specificity, notes."""
    lines = risk_lines(result)
    op = result.op
    if op:
        flag = "above" if result.score >= op["point"]["threshold"] else "below"
        lines += [f"**Threshold {op['point']['threshold']:.4f}** (picked on the out-of-fold "
                  f"scores at sensitivity ≥ {target_tpr:.2f}): sensitivity "
                  f"{_rate(op, 'recall')}, specificity {_rate(op, 'specificity')} over "
                  f"{op['rows']:,} lesions of {op['patients']:,} patients.",
                  f"This lesion scores **{flag}** the threshold"
                  f"{': flag it for review.' if flag == 'above' else '.'}"]
    else:
        lines.append(f"Sensitivity/specificity unavailable: {result.op_note}")
    lines += [result.cam_note, *result.notes,
              f"_{NOTICE[0].upper()}{NOTICE[1:]}._"]
    return "\n\n".join(x for x in lines if x)


def handle(clinic: Clinic, cfg: AppConfig, upload: str | None, *values: Any
           ) -> tuple[str, np.ndarray | None]:
    """One request: never raises, every failure becomes a sentence in the page."""
    try:
        image = read_upload(upload, cfg.max_pixels)
        meta = parse_metadata(dict(zip([f.name for f in FIELDS], values, strict=True)))
        result = clinic.score(image, meta)
        return render(result, cfg.target_tpr), result.overlay
    except InputError as err:
        return f"### Cannot score this upload\n\n{err}", None
    except Exception as err:  # a bug: the server log has the traceback, the page its type
        log.exception("app: scoring failed")
        return (f"### Something went wrong\n\nThe upload could not be scored "
                f"({type(err).__name__}); the server log has the details."), None


def handle_patient(clinic: Clinic, cfg: AppConfig, csv: str | None,
                   crops: list[str] | None) -> str:
    """A patient's CSV (+ crops) scored together; never raises, like :func:`handle`."""
    try:
        rows, ignored = read_patient_csv(csv, cfg.max_patient_rows)
        images, notes = crops_by_id(crops, rows["isic_id"].to_list(), cfg.max_pixels,
                                    clinic.needs_crops())
        result = clinic.score_patient(rows, images)
        if ignored:
            notes.append(f"Columns not in the test file, ignored: {', '.join(ignored[:8])}")
        result.notes += notes
        return render_patient(result)
    except InputError as err:
        return f"### Cannot score this patient\n\n{err}"
    except Exception as err:  # a bug: the server log has the traceback, the page its type
        log.exception("app: patient scoring failed")
        return (f"### Something went wrong\n\nThe CSV could not be scored "
                f"({type(err).__name__}); the server log has the details.")


def load_clinic(cfg: AppConfig) -> Clinic:
    """The saved models and their operating points (once, before the page opens)."""
    ops = OperatingPointConfig(target_tpr=cfg.target_tpr, n_boot=cfg.n_boot)
    if cfg.bundle:  # the deployed model: its runs, its scorer and its operating points
        folder = resolve(cfg.bundle, cfg.artifacts)
        return Clinic(str(folder / "artifacts"), cfg.image_run, cfg.stacker, cfg.fallback, ops,
                      cfg.layer, cfg.cpu_threads, str(folder))
    return Clinic(cfg.artifacts, cfg.image_run, cfg.stacker, cfg.fallback, ops, cfg.layer,
                  cfg.cpu_threads, "")


def _gradio() -> ModuleType:
    """Gradio, the optional extra ``app`` (the rest of the app runs without it)."""
    return require("gradio", needed_by="the clinician web app (make app)",
                   instead="use `isic predict-images` instead")


def named(fn: Callable[..., Any], names: list[str]) -> Callable[..., Any]:
    """``fn`` with a signature naming its parameters: Gradio's API page (``/?view=api``) and
    its clients then call ``/score_crop`` with ``age_approx=...``, not ``param_3``."""
    def call(*args: Any) -> Any:
        return fn(*args)

    call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
    return call


def _field_input(gr: Any, field: Any) -> Any:
    if field.numeric:  # a textbox: empty stays None and our own check words every error
        return gr.Textbox(label=field.label, value="", max_lines=1, elem_id=f"meta-{field.name}",
                          placeholder=f"{field.low:g} to {field.high:g}")
    return gr.Dropdown(choices=list(field.levels), value=None, label=field.label,
                       elem_id=f"meta-{field.name}")


def build(clinic: Clinic, cfg: AppConfig) -> Any:
    """The page: upload + optional metadata on the left, result and heatmap on the right."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    gr = _gradio()
    with gr.Blocks(title="isicstack: lesion check", analytics_enabled=False) as page:
        gr.Markdown("## isicstack: one lesion crop\nUpload a crop (JPEG or PNG). Without "
                    "metadata the image-only model scores it; fill in any metadata field to "
                    f"use the full stack (tabular + image models + stacker). **{NOTICE}.**")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="lesion crop (JPEG or PNG)", type="filepath",
                                 elem_id="upload")
                with gr.Accordion("metadata (optional)", open=False, elem_id="metadata"):
                    fields = [_field_input(gr, f) for f in FIELDS]
                button = gr.Button("Score", variant="primary", elem_id="score")
            with gr.Column():
                result = gr.Markdown("Upload a crop and press Score.", elem_id="result")
                heat = gr.Image(label="Grad-CAM overlay", type="numpy", format="png",
                                interactive=False, elem_id="overlay")
        button.click(named(lambda up, *vals: handle(clinic, cfg, up, *vals),
                           ["crop", *(f.name for f in FIELDS)]), [upload, *fields],
                     [result, heat], concurrency_limit=1, api_name="score_crop")
        patient_section(gr, clinic, cfg)
    return page


def patient_section(gr: Any, clinic: Clinic, cfg: AppConfig) -> None:
    """A patient's lesions as a CSV (+ their crops), scored together."""
    with gr.Accordion("a patient's lesions (CSV): score them together", open=False,
                      elem_id="patient"):
        gr.Markdown("One row per lesion with `isic_id` and any test-metadata columns; crops "
                    "named `<isic_id>.jpg` or `.png`. Patient-relative features (each lesion "
                    "against the patient's others) are then computed as in training.")
        with gr.Row():
            csv = gr.File(label="lesions (CSV)", type="filepath", file_types=[".csv"],
                          elem_id="patient-csv")
            crops = gr.File(label="their crops", type="filepath", file_count="multiple",
                            elem_id="patient-crops")
        button = gr.Button("Score patient", elem_id="score-patient")
        out = gr.Markdown("", elem_id="patient-result")
    button.click(named(lambda c, im: handle_patient(clinic, cfg, c, im),
                       ["lesions_csv", "crops"]), [csv, crops], [out], concurrency_limit=1,
                 api_name="score_patient")


def launch(page: Any, cfg: AppConfig, block: bool = True) -> Any:
    """Serve ``page`` on ``cfg.host:cfg.port`` (system fonts, no share link, no SSR)."""
    gr = _gradio()
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])
    page.launch(server_name=cfg.host, server_port=cfg.port, share=False, show_error=False,
                prevent_thread_lock=not block, max_file_size=int(cfg.max_upload_mb * 2**20),
                ssr_mode=False, theme=theme, quiet=not block)
    return page


def run(cfg: AppConfig) -> None:
    """``isic app``: load the models, then serve the page until interrupted."""
    _gradio()  # fail before loading models when the extra is missing
    clinic = load_clinic(cfg)
    log.info("app: http://%s:%d (image run %s; %s)", cfg.host, cfg.port, clinic.image.name,
             f"stack {clinic.stack['name']}" if clinic.stack else
             f"no stack: {clinic.stack_error}")
    launch(build(clinic, cfg), cfg, block=True)
