"""The batched, on-device training augmentation (vision/batch_augment.py): the geometry is the
resize / crop / flip it claims to be, parameters are drawn per crop as torchvision draws them,
and the colour jitter matches the per-crop one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as nnf
from torchvision.transforms import v2

from isicstack.vision.augment import adjust_hue as adjust_hue_np
from isicstack.vision.batch_augment import (
    BatchAugment,
    adjust_hue,
    collate_padded,
    crop_boxes,
    sample_boxes,
    unpack,
)

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _crops(sizes: list[tuple[int, int]], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for h, w in sizes]


def _hwc(crops: list[torch.Tensor]) -> list[np.ndarray]:
    return [c.permute(1, 2, 0).numpy() for c in crops]  # what a loader worker decodes


def test_collate_packs_without_resampling():
    crops = _crops([(40, 50), (60, 30)])
    batch = collate_padded([{"image": c, "target": float(i), "index": i}
                            for i, c in enumerate(_hwc(crops))])
    assert batch["image"].shape == (2, 60 * 50 * 3) and batch["hw"].tolist() == [[40, 50], [60, 30]]
    assert torch.equal(batch["image"][1, : 60 * 30 * 3], crops[1].permute(1, 2, 0).reshape(-1))
    canvas = unpack(batch["image"], batch["hw"])  # each crop top-left, as decoded
    assert canvas.shape == (2, 3, 60, 50)
    assert canvas.is_contiguous(memory_format=torch.channels_last)  # no transposition
    assert torch.equal(canvas[0, :, :40, :50], crops[0])
    assert torch.equal(canvas[1, :, :60, :30], crops[1])
    assert batch["index"].tolist() == [0, 1]


def test_no_augment_is_the_bilinear_resize_of_each_crop():
    """Box = the whole crop, no flip: F.interpolate's pixel mapping and edge clamp, whatever
    lies beside the crop (up- and downscaled crops in one batch)."""
    crops = _crops([(40, 50), (60, 30), (33, 33), (20, 31)])
    batch = collate_padded([{"image": c} for c in _hwc(crops)])
    canvas = unpack(batch["image"], batch["hw"]).clone()
    canvas[:] = 255  # whatever lies beside a crop: never read
    for i, c in enumerate(crops):
        canvas[i, :, : c.shape[1], : c.shape[2]] = c
    out = BatchAugment(32, "none", MEAN, STD)(canvas, batch["hw"])
    assert torch.allclose(out, BatchAugment(32, "none", MEAN, STD)(batch["image"], batch["hw"]),
                          atol=1e-5)
    for i, c in enumerate(crops):
        ref = nnf.interpolate(c[None].float() / 255, size=(32, 32), mode="bilinear",
                              align_corners=False)
        ref = (ref - 0.5) / 0.25
        assert torch.allclose(out[i:i + 1], ref, atol=1e-4), i


def test_flips_and_large_crops():
    crop = _crops([(64, 64)])[0][None].float() / 255
    boxes = torch.tensor([[0.0, 0.0, 64.0, 64.0]])
    plain = sample_boxes(crop, boxes, 64)
    assert torch.allclose(plain, crop, atol=1e-4)  # same size: the crop itself
    h = sample_boxes(crop, boxes, 64, torch.tensor([[True, False]]))
    v = sample_boxes(crop, boxes, 64, torch.tensor([[False, True]]))
    assert torch.allclose(h, torch.flip(crop, dims=[3]), atol=1e-4)
    assert torch.allclose(v, torch.flip(crop, dims=[2]), atol=1e-4)
    big = torch.rand(1, 3, 256, 256)  # a 4x downscale averages blocks (no aliasing)
    small = sample_boxes(big, torch.tensor([[0.0, 0.0, 256.0, 256.0]]), 64)
    assert torch.allclose(small, nnf.avg_pool2d(big, 4), atol=1e-4)


def test_boxes_follow_random_resized_crop():
    hw = torch.tensor([[100, 120]] * 2000 + [[2, 300]])  # the last: no candidate fits
    boxes = crop_boxes(hw, (0.6, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0))
    y0, x0, h, w = boxes[:-1].unbind(1)
    assert (y0 >= 0).all() and (x0 >= 0).all() and (y0 + h <= 100).all() and (x0 + w <= 120).all()
    area = h * w / (100 * 120)
    assert area.min() > 0.58 and area.max() <= 1.0 and (w / h).min() > 0.74 and (w / h).max() < 1.35
    torch.manual_seed(0)  # torchvision's own draw: the same distribution of areas
    tv = [v2.RandomResizedCrop.get_params(torch.zeros(3, 100, 120), [0.6, 1.0], [3 / 4, 4 / 3])
          for _ in range(2000)]
    assert abs(float(area.mean()) - np.mean([b[2] * b[3] for b in tv]) / 12000) < 0.01
    assert len({tuple(b) for b in boxes[:50].tolist()}) == 50  # drawn per crop
    assert boxes[-1].tolist() == [0.0, 149.0, 2.0, 3.0] or boxes[-1][2] == 2  # centred fallback


def test_strong_draws_per_crop_and_stays_in_range():
    crop = _hwc(_crops([(80, 80)]))[0]
    batch = collate_padded([{"image": crop} for _ in range(8)])
    aug = BatchAugment(48, "strong", MEAN, STD)
    out = aug(batch["image"], batch["hw"], torch.Generator().manual_seed(1))
    assert out.shape == (8, 3, 48, 48) and torch.isfinite(out).all()
    flat = out.flatten(1)
    assert len({round(float(v), 4) for v in flat.sum(1)}) == 8  # eight different views
    raw = out * 0.25 + 0.5
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5


@pytest.mark.parametrize("shift", [-0.02, 0.01, 0.3])
def test_hue_matches_the_per_crop_jitter(shift: float):
    x = torch.rand(2, 3, 16, 16)
    ours = adjust_hue(x, torch.tensor([shift, shift]))
    ref = np.stack([adjust_hue_np(x[i].numpy(), shift) for i in range(2)])
    assert np.allclose(ours.numpy(), ref, atol=1e-5)


@pytest.mark.parametrize("indexed", [False, True], ids=["headers_read", "sizes_indexed"])
def test_threaded_dataset_builds_the_batch(tmp_path, indexed: bool):
    """augment_on=device's loader side: decode threads fill one batch in place (the crops as
    decoded, rows in order), a bad crop is an error naming it, and buffer reuse leaves the
    newest batches intact."""
    from isicstack.data.crops import BadImageError, decode_jpeg, encode_jpeg, write_crops
    from isicstack.vision.data import RING, CropDataset, HDF5Source

    rng = np.random.default_rng(0)
    sizes = [(30 + i, 40 - i) for i in range(10)]
    blobs = [encode_jpeg(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in sizes]
    ids = [f"ISIC_{i}" for i in range(10)]
    write_crops(tmp_path / "c.hdf5", list(zip(ids, blobs, strict=True)) + [("BAD", b"nope")])
    tab = rng.normal(size=(10, 2)).astype(np.float32)
    ds = CropDataset(HDF5Source(tmp_path / "c.hdf5"), ids, None, np.arange(10) % 2, tab,
                     threads=3)
    if indexed:  # sizes known before the batch is read (stream mode indexes them)
        assert ds.source.store.index(sizes=True) == 11 and ds.source.size("ISIC_3") == sizes[3]
    batches = [ds.__getitems__([9, 2, 5, 0]) for _ in range(RING + 1)]
    for b in batches[-RING:]:
        assert collate_padded(b) is b and b["index"].tolist() == [9, 2, 5, 0]
        assert b["hw"].tolist() == [list(sizes[i]) for i in (9, 2, 5, 0)]
        assert torch.equal(b["tab"], torch.from_numpy(tab[[9, 2, 5, 0]]))
        for r, i in enumerate((9, 2, 5, 0)):
            h, w = sizes[i]
            ref = decode_jpeg(blobs[i], fast=True)
            got = unpack(b["image"], b["hw"])[r, :, :h, :w].permute(1, 2, 0).numpy()
            assert np.array_equal(got, ref)
    bad = CropDataset(HDF5Source(tmp_path / "c.hdf5"), ["ISIC_1", "BAD"], None, threads=2)
    with pytest.raises(BadImageError, match="BAD"):
        bad.__getitems__([0, 1])
