"""Models: any timm backbone with a fresh head and dropout, pretrained weights found offline; a small CNN for digits.

Weights are looked for, in order: the ``weights`` argument, ``$KITBOX_WEIGHTS`` (a file or a folder), files under
``/kaggle/input`` (a weights dataset attached to a notebook), then timm's own cache. Nothing is ever downloaded
unless ``download=True``, so an offline machine gets a clear message instead of a hang.
"""
from __future__ import annotations

import os
from pathlib import Path

import timm
import torch
from torch import nn

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
KAGGLE_INPUT = Path("/kaggle/input")


class WeightsNotFound(FileNotFoundError):
    """No pretrained weights for the backbone on this machine; the message says how to supply them."""


def _candidates(folder: Path, name: str, max_depth: int = 4) -> list[Path]:
    # A weights dataset on Kaggle nests files a level or two down; don't walk a whole disk.
    found = []
    base = len(folder.parts)
    for dirpath, dirnames, filenames in os.walk(folder):
        if len(Path(dirpath).parts) - base >= max_depth:
            dirnames.clear()
        found += [Path(dirpath) / f for f in filenames if f.startswith(name) and f.endswith(WEIGHT_SUFFIXES)]
    return sorted(found)


def _hub_cache_file(name: str) -> Path | None:
    """The weights file timm would load, if the Hugging Face cache already holds it (no network access)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cfg = timm.models.get_pretrained_cfg(name)
        hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        if not hub_id:
            return None
        for filename in ("model.safetensors", "pytorch_model.bin"):
            hit = try_to_load_from_cache(hub_id, filename)
            if isinstance(hit, str):
                return Path(hit)
    except Exception:  # an odd cache or an old huggingface_hub: treat as "not cached"
        return None
    return None


def find_weights(name: str, weights: str | Path | None = None) -> Path | None:
    """The local weights file for backbone ``name``, or None. An explicit ``weights`` path must exist."""
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_dir():
            hits = _candidates(path, name)
            if not hits:
                raise WeightsNotFound(f"no weights file for {name} ({name}*{{{','.join(WEIGHT_SUFFIXES)}}}) in {path}")
            return hits[0]
        if not path.is_file():
            raise WeightsNotFound(f"weights file {path} does not exist")
        return path
    env = os.environ.get("KITBOX_WEIGHTS")
    if env:
        path = Path(env).expanduser()
        if path.is_file():
            return path
        if path.is_dir() and (hits := _candidates(path, name)):
            return hits[0]
    if KAGGLE_INPUT.is_dir() and (hits := _candidates(KAGGLE_INPUT, name)):
        return hits[0]
    return _hub_cache_file(name)


def no_weights_message(name: str) -> str:
    return (
        f"no pretrained weights for {name!r} on this machine, and kitbox does not download them unasked. Supply them "
        f"with --weights PATH (or create_model(..., weights=PATH)), set KITBOX_WEIGHTS to the file or its folder, or on "
        f"Kaggle attach a dataset holding {name}*.safetensors (it is found under /kaggle/input). Online, "
        f"download=True fetches timm's weights. To train from random weights instead, pass --from-scratch "
        f"(create_model(..., pretrained=False)); expect much worse accuracy."
    )


def _ported_norm(name: str, path: Path) -> dict:
    """Normalization for a weights file whose tag timm knows only as a TensorFlow port.

    A file named ``efficientnet_lite0.in1k.safetensors`` holds Google's TF weights renamed to timm's keys: timm
    has no ``efficientnet_lite0.in1k`` but has ``tf_efficientnet_lite0.in1k``, whose config says the inputs are
    scaled to [-1, 1] (mean = std = 0.5), not ImageNet's mean/std. Using the wrong one costs about 1% accuracy on
    Dogs vs Cats' linear probe (97.4% vs 98.3%).
    """
    rest = path.name[len(name) + 1:] if path.name.startswith(name + ".") else ""
    tag = rest.split(".")[0]
    if not tag or f"{name}.{tag}" in timm.list_pretrained(f"{name}.*"):
        return {}
    if f"tf_{name}.{tag}" in timm.list_pretrained(f"tf_{name}.*"):
        cfg = timm.models.get_pretrained_cfg(f"tf_{name}.{tag}")
        return dict(mean=tuple(cfg.mean), std=tuple(cfg.std))
    return {}


def create_model(
    name: str, n_out: int, pretrained: bool = True, weights: str | Path | None = None, ps: float = 0.25,
    download: bool = False, in_chans: int = 3, cfg_overlay: dict | None = None, **kwargs,
) -> nn.Module:
    """A timm backbone with a freshly initialised ``n_out`` head and dropout ``ps`` before it.

    ``pretrained=False`` trains from scratch; otherwise weights come from :func:`find_weights` (or timm's hub when
    ``download=True``) and a missing file raises :class:`WeightsNotFound` explaining how to supply one.
    ``cfg_overlay`` overrides the pretrained config (e.g. ``mean``/``std``), which the transforms read.
    """
    if name not in timm.list_models():
        raise ValueError(f"unknown timm model {name!r}; see timm.list_models('{name[:4]}*')")
    if not pretrained:
        model = timm.create_model(name, pretrained=False, num_classes=n_out, drop_rate=ps, in_chans=in_chans, **kwargs)
        model.weights_file = None
        return model
    path = find_weights(name, weights)
    if path is None and not download:
        raise WeightsNotFound(no_weights_message(name))
    overlay = dict(file=str(path), **_ported_norm(name, path)) if path is not None else {}
    overlay.update(cfg_overlay or {})
    model = timm.create_model(
        name, pretrained=True, pretrained_cfg_overlay=overlay or None, num_classes=n_out, drop_rate=ps, in_chans=in_chans,
        **kwargs,
    )
    # timm keeps ImageNet's classifier when n_out happens to be 1000; the recipe wants a fresh head regardless.
    model.reset_classifier(n_out)
    model.weights_file = str(path) if path is not None else "timm-hub"
    return model


def head_of(model: nn.Module) -> nn.Module:
    """The trainable head on pooled features (dropout + classifier), sharing the model's classifier parameters,
    so a head trained on cached features is already in place in the full model."""
    return nn.Sequential(nn.Dropout(getattr(model, "drop_rate", 0.0)), model.get_classifier())


def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Backbone output after global pooling, before dropout and classifier (what :func:`head_of` consumes)."""
    return model.forward_head(model.forward_features(x), pre_logits=True)


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SmallConvNet(nn.Module):
    """A VGG-style CNN for small images (28x28 digits): one 3x3 conv-BN-ReLU at full resolution, then stages of
    max-pool + two conv-BN-ReLU, global average + max pooling, dropout and a linear head. Declares its layer
    groups (stages, then head). Full resolution gets one conv only: there it costs 4x a conv after pooling."""

    def __init__(self, n_out: int, in_chans: int = 1, widths=(32, 64, 128), ps: float = 0.25):
        super().__init__()
        stages, c = [], in_chans
        for i, w in enumerate(widths):
            convs = [_conv_bn(c, w)] if i == 0 else [nn.MaxPool2d(2), _conv_bn(c, w), _conv_bn(w, w)]
            stages.append(nn.Sequential(*convs))
            c = w
        self.stages = nn.ModuleList(stages)
        self.head = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(2 * c), nn.Dropout(ps), nn.Linear(2 * c, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        # avg + max pooling side by side: fastai's AdaptiveConcatPool2d, a cheap accuracy win
        x = torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1)
        return self.head(x)

    def layer_groups(self) -> list[nn.Module]:
        return [*self.stages, self.head]
