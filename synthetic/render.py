"""Crop rendering for the synthetic ISIC 2024 set: one JPEG per lesion, drawn from its table row.

Each crop shows a fixed 12 mm field of view (so lesion size in pixels follows the row's long
diameter) on the patient's skin tone: an elliptical lesion of the row's Lab colour, eccentricity
and orientation, a border made irregular by angular harmonics (``norm_border``) and asymmetry
(``symm_2axis``), internal texture (``stdL``), dark variegated blotches driven mainly by the
shared latent ``s`` and blue-white veil patches driven only by the image-only latent ``u`` (in no
table column). Smooth random fields are bilinear upsamplings of a small Gaussian grid computed as
``Wy @ G @ Wx.T`` (two tiny matmuls), so an image costs ~1 ms of numpy. Every crop draws from its
own generator seeded by ``(seed, split, row)``, so bytes do not depend on the worker count.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator, Sequence

import numpy as np

from isicstack.data.crops import encode_jpeg

FOV_MM = 12.0
PARAMS = ("side", "a_px", "q", "theta", "les_r", "les_g", "les_b", "skin_r", "skin_g", "skin_b",
          "white", "border", "asym", "tex", "var_thr", "veil_thr", "hair")
P = {name: i for i, name in enumerate(PARAMS)}
VEIL_RGB = np.array([118.0, 134.0, 168.0], dtype=np.float32)
HAIR_RGB = np.array([58.0, 40.0, 32.0], dtype=np.float32)


def lab_to_rgb(L: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) -> sRGB in 0-255, vectorised; shape (..., 3)."""
    fy = (L + 16.0) / 116.0
    f = np.stack([fy + a / 500.0, fy, fy - b / 200.0], axis=-1)
    lin = np.where(f > 6 / 29, f**3, 3 * (6 / 29) ** 2 * (f - 4 / 29))
    xyz = lin * np.array([0.95047, 1.0, 1.08883])
    m = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415],
                  [0.0557, -0.2040, 1.0570]])
    rgb = np.clip(xyz @ m.T, 0.0, 1.0)
    rgb = np.where(rgb > 0.0031308, 1.055 * rgb ** (1 / 2.4) - 0.055, 12.92 * rgb)
    return rgb * 255.0


def image_params(c: dict[str, np.ndarray], s: np.ndarray, u: np.ndarray, v: np.ndarray,
                 image_size: int, rng: np.random.Generator) -> np.ndarray:
    """Per-row drawing parameters (n, len(PARAMS)) from table columns and latents, vectorised."""
    n = len(s)
    side = np.clip(np.round(image_size * np.clip(np.exp(rng.normal(0, 0.25, n)), 0.5, 1.8)),
                   24, None)
    out = np.empty((n, len(PARAMS)))
    out[:, P["side"]] = side
    out[:, P["a_px"]] = c["clin_size_long_diam_mm"] / FOV_MM * side / 2
    out[:, P["q"]] = c["tbp_lv_minorAxisMM"] / c["clin_size_long_diam_mm"]
    out[:, P["theta"]] = np.radians(c["tbp_lv_symm_2axis_angle"] + rng.normal(0, 4, n))
    # TBP Lab values are darker than photographs: lift L so crops look like the real ones
    les = lab_to_rgb(c["tbp_lv_L"] + 20, c["tbp_lv_A"], c["tbp_lv_B"])
    skin = lab_to_rgb(c["tbp_lv_Lext"] + 20, c["tbp_lv_Aext"], c["tbp_lv_Bext"])
    out[:, P["les_r"]:P["les_b"] + 1] = les
    out[:, P["skin_r"]:P["skin_b"] + 1] = skin
    out[:, P["white"]] = c["white"]
    out[:, P["border"]] = 0.018 * c["tbp_lv_norm_border"]
    out[:, P["asym"]] = 0.25 * c["tbp_lv_symm_2axis"]
    out[:, P["tex"]] = np.clip(c["tbp_lv_stdL"], 0, 12)
    out[:, P["var_thr"]] = 1.25 - 0.85 * s - 0.2 * v
    out[:, P["veil_thr"]] = 1.6 - 1.0 * u
    out[:, P["hair"]] = rng.choice(3, n, p=[0.75, 0.17, 0.08])
    return out


def _interp(S: int, k: int, centre: float, radius: float) -> np.ndarray:
    """(S, k) bilinear weights mapping pixel rows onto a k-point grid spanning centre +- radius."""
    g = np.clip(((np.arange(S, dtype=np.float32) - centre) / radius + 1) * 0.5 * (k - 1), 0,
                k - 1.001)
    i0 = g.astype(np.int64)
    w = g - i0
    W = np.zeros((S, k), dtype=np.float32)
    W[np.arange(S), i0] = 1 - w
    W[np.arange(S), i0 + 1] = w
    return W


def _field(rng: np.random.Generator, Wy: np.ndarray, Wx: np.ndarray) -> np.ndarray:
    k = Wy.shape[1]
    return Wy @ rng.standard_normal((k, k), dtype=np.float32) @ Wx.T


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * x)


def _lesion(p: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Geometry and the texture, variegation and veil layers of one crop, drawn from ``rng``
    in :func:`render`'s order (so the layers are exactly those of the written crop)."""
    S = int(p[P["side"]])
    cy, cx = (S - 1) / 2 + rng.normal(0, 0.03 * S, 2)
    ys = np.arange(S, dtype=np.float32) - np.float32(cy)
    xs = np.arange(S, dtype=np.float32) - np.float32(cx)
    a = max(float(p[P["a_px"]]), 1.5)
    b = max(a * float(p[P["q"]]), 1.0)
    ct, st = np.float32(np.cos(p[P["theta"]])), np.float32(np.sin(p[P["theta"]]))
    un = (xs[None, :] * ct + ys[:, None] * st) / np.float32(a)
    vn = (ys[:, None] * ct - xs[None, :] * st) / np.float32(b)
    rho = np.sqrt(un * un + vn * vn)
    phi = np.arctan2(vn, un)
    amp = p[P["border"]] * rng.uniform(0.3, 1.0, 4) / np.sqrt(np.arange(2, 6))
    ph = rng.uniform(0, 2 * np.pi, 5)
    edge = np.float32(1.0) + p[P["asym"]] * np.cos(phi + ph[4])
    for k in range(4):
        edge += amp[k] * np.cos((k + 2) * phi + ph[k])
    mask = np.clip((edge - rho) * np.float32(a / (0.8 + 0.06 * a)) + 0.5, 0, 1)
    inner = mask * np.clip((edge - rho) * 3.0, 0, 1)

    r = 1.1 * a
    Wy, Wx = _interp(S, 5, cy, r), _interp(S, 5, cx, r)
    tex = _field(rng, Wy, Wx)
    var = _sigmoid((_field(rng, Wy, Wx) - p[P["var_thr"]]) * 5) * inner
    veil = _sigmoid((_field(rng, Wy, Wx) - p[P["veil_thr"]]) * 5) * inner * 0.7
    return {"ys": ys, "xs": xs, "rho": rho, "mask": mask, "inner": inner, "tex": tex,
            "var": var, "veil": veil}


def veil_share(p: np.ndarray, rng: np.random.Generator) -> float:
    """Share of the lesion's interior under blue-white veil in the crop ``render(p, rng)``
    draws: what a perfect reader of that crop could measure of the image-only latent."""
    layers = _lesion(p, rng)
    return float(layers["veil"].sum() / max(float(layers["inner"].sum()), 1e-6))


def crop_rng(seed: int, split_code: int, row: int) -> np.random.Generator:
    """The generator of one crop: seeded by (seed, split, row), so bytes do not depend on the
    worker count."""
    return np.random.default_rng((seed, split_code, row))


def render(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One RGB uint8 crop (side, side, 3) from a row of :func:`image_params`."""
    S = int(p[P["side"]])
    layers = _lesion(p, rng)
    ys, xs, rho, mask = layers["ys"], layers["xs"], layers["rho"], layers["mask"]
    tex, var, veil = layers["tex"], layers["var"], layers["veil"]
    Wb, Wm = _interp(S, 3, (S - 1) / 2, S / 2), _interp(S, max(6, S // 5), (S - 1) / 2, S / 2)
    shade = 1 + 0.05 * _field(rng, Wb, Wb) + 0.03 * _field(rng, Wm, Wm)

    les_rgb = p[P["les_r"]:P["les_b"] + 1].astype(np.float32)
    skin_rgb = p[P["skin_r"]:P["skin_b"] + 1].astype(np.float32)
    dark = (1 - 0.18 * np.clip(1 - rho, 0, 1) + 0.012 * float(p[P["tex"]]) * tex)
    les = les_rgb * dark[..., None]
    les += (les_rgb * 0.35 - les) * var[..., None]
    les += (VEIL_RGB - les) * veil[..., None]
    img = skin_rgb * shade[..., None]
    img += (les - img) * mask[..., None]
    for _ in range(int(p[P["hair"]])):
        t = rng.uniform(0, np.pi)
        d = np.abs(xs[None, :] * np.cos(t) + ys[:, None] * np.sin(t) - rng.normal(0, S / 4))
        alpha = np.clip(1.2 - d / max(0.6, S / 100), 0, 1) * 0.6
        img += (HAIR_RGB - img) * alpha[..., None]
    if p[P["white"]]:
        img = img * 0.88 + 28
    img += rng.standard_normal((S, S, 1), dtype=np.float32) * 2.5
    return np.clip(img, 0, 255).astype(np.uint8)


def _encode_chunk(task: tuple[int, int, int, np.ndarray, int]) -> list[bytes]:
    """Worker: render and JPEG-encode rows ``start..start+len(params)`` of one split."""
    seed, split_code, start, params, quality = task
    out = []
    for i, p in enumerate(params):
        out.append(encode_jpeg(render(p, crop_rng(seed, split_code, start + i)),
                               quality=quality))
    return out


def encode_images(ids: Sequence[str], params: np.ndarray, seed: int, split_code: int,
                  workers: int = 1, quality: int = 90, chunk: int = 512
                  ) -> Iterator[tuple[str, bytes]]:
    """Yield ``(isic_id, jpeg)`` in row order, rendering in ``workers`` spawned processes."""
    tasks = [(seed, split_code, s, params[s:s + chunk], quality)
             for s in range(0, len(ids), chunk)]
    if workers <= 1 or len(tasks) <= 1:
        results: Iterator[list[bytes]] = map(_encode_chunk, tasks)
        yield from _pair(ids, results, chunk)
        return
    # spawn, not fork: the parent has polars' thread pool running
    with mp.get_context("spawn").Pool(workers) as pool:
        yield from _pair(ids, pool.imap(_encode_chunk, tasks), chunk)


def _pair(ids: Sequence[str], results: Iterator[list[bytes]], chunk: int
          ) -> Iterator[tuple[str, bytes]]:
    for k, blobs in enumerate(results):
        yield from zip(ids[k * chunk:k * chunk + len(blobs)], blobs, strict=True)
