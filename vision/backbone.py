"""A timm backbone with its weights: timm's own loading, an offline file, or fail fast.

Pretrained weights resolve the way timm users expect: ``model.pretrained: true`` goes through
timm's own mechanism (the Hugging Face hub or its local cache), ``model.pretrained_path`` names
an offline file or folder (passed to timm as ``pretrained_cfg_overlay={"file": ...}``). Offline
with the weights not cached, it fails at once with a message saying so, instead of timm's hub
retries.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

import timm
import torch
from huggingface_hub import try_to_load_from_cache
from torch import nn

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def find_pretrained(model_name: str, pretrained_path: str) -> Path:
    """The local weight file for ``model_name``: ``pretrained_path`` itself, or a file in it.

    In a folder, looks for ``<name>.<ext>`` and ``<name>/model.safetensors`` /
    ``pytorch_model.bin`` (the hub layout), for the full name and the architecture without tag.
    """
    path = Path(pretrained_path)
    if path.is_file():
        return path
    looked = [path]
    if path.is_dir():
        names = dict.fromkeys([model_name, model_name.split(".")[0]])
        for n in names:
            cands = [path / f"{n}{s}" for s in WEIGHT_SUFFIXES]
            cands += [path / n / f for f in HUB_FILES[:2]]
            for c in cands:
                if c.is_file():
                    return c
            looked += cands
    shown = ", ".join(str(p) for p in looked[:6]) + (" ..." if len(looked) > 6 else "")
    raise FileNotFoundError(
        f"model.pretrained=true for {model_name!r} but no local weights found (looked at {shown}); "
        "put a timm state dict there, or clear model.pretrained_path to use timm's hub/cache")


def hub_offline() -> bool:
    """True when the Hugging Face hub must not be contacted (HF_HUB_OFFLINE / TRANSFORMERS_)."""
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_cached(model_name: str) -> bool:
    """Whether timm's default weights for ``model_name`` are in the local hub cache."""
    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None:
        raise ValueError(f"timm knows no pretrained weights for {model_name!r}")
    if not cfg.hf_hub_id:
        name = os.path.basename(cfg.url or "")
        return bool(name) and (Path(torch.hub.get_dir()) / "checkpoints" / name).is_file()
    repo = cfg.hf_hub_id.split("@")[0]
    files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HUB_FILES
    return any(isinstance(try_to_load_from_cache(repo, f), str) for f in files)


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick connection to the hub (instead of timm's retries when there is no network)."""
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def pretrained_overlay(model_name: str, pretrained_path: str) -> dict[str, Any] | None:
    """timm ``pretrained_cfg_overlay`` for the weights to load; fails fast when unavailable."""
    if pretrained_path:
        return {"file": str(find_pretrained(model_name, pretrained_path))}
    if not hub_cached(model_name) and (hub_offline() or not hub_reachable()):
        raise FileNotFoundError(
            f"model.pretrained=true for {model_name!r}: its weights are not in the local "
            "timm/Hugging Face cache and the hub is offline or unreachable. Download them once "
            "on a machine with a network, or set model.pretrained_path to a weight file or "
            "folder, or set model.pretrained=false")
    return None


def create_backbone(model_name: str, pretrained: bool = False,
                    pretrained_path: str = "") -> nn.Module:
    """``timm.create_model(name, num_classes=0)`` with timm's own pretrained loading.

    ``drop_rate=0``: the dropout is the image model's head (``model.drop_rate``); 0 also
    overrides a model's own timm default, which would drop features before the head."""
    if not timm.is_model(model_name):
        raise ValueError(f"model.name {model_name!r} is not a timm model "
                         "(see timm.list_models())")
    overlay = pretrained_overlay(model_name, pretrained_path) if pretrained else None
    try:
        model = timm.create_model(model_name, pretrained=pretrained, num_classes=0,
                                  drop_rate=0.0, pretrained_cfg_overlay=overlay)
    except (OSError, RuntimeError) as err:  # no network, bad file, keys that do not fit
        where = overlay["file"] if overlay else "timm's hub/cache"
        raise ValueError(f"pretrained weights for {model_name!r} from {where} could not be "
                         f"loaded: {str(err)[:300]}") from err
    if overlay:
        _check_fit(model, Path(overlay["file"]), model_name)
    if pretrained:
        log.info("loaded pretrained weights for %s from %s", model_name,
                 overlay["file"] if overlay else "timm's hub/cache")
    return model


def _check_fit(model: nn.Module, weights: Path, model_name: str) -> None:
    """timm loads a mismatched head non-strictly; the backbone must fit exactly."""
    keys = set(timm.models.load_state_dict(str(weights)))
    missing = [k for k in model.state_dict() if k not in keys]
    if missing:
        raise ValueError(f"{weights}: does not fit {model_name!r}: {len(missing)} missing "
                         f"key(s), e.g. {missing[:3]}")
