"""Models: any timm backbone with a fresh head and dropout, pretrained weights found offline; a small CNN for digits.

Weights are looked for, in order: the ``weights`` argument, ``$KITBOX_WEIGHTS`` (a file or a folder), files under
``/kaggle/input`` (a weights dataset attached to a notebook), then timm's own cache. Nothing is ever downloaded
unless ``download=True`` (the command line's ``--download-weights``), so an offline machine gets a recipe to follow
instead of a hang; ``model.weights_source`` says where the weights came from, for the run summary.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
HUB_FILE_NAMES = ("model.safetensors", "pytorch_model.bin")  # a hub repo saved as is: the folder carries the name
KAGGLE_INPUT = Path("/kaggle/input")


class WeightsNotFound(FileNotFoundError):
    """No pretrained weights for the backbone on this machine; the message says how to supply them."""


class WeightsDownloadFailed(WeightsNotFound):
    """``download=True`` but the hub could not be reached (offline machine, Kaggle notebook with Internet off)."""


@dataclass(frozen=True)
class WeightsLocation:
    path: Path
    source: str  # "file PATH", "KITBOX_WEIGHTS PATH", "Kaggle input PATH" or "timm hub cache PATH"


def _names(name: str, filename: str) -> bool:
    """Whether a file name is weights for backbone ``name``: ``NAME.tag.safetensors`` or ``NAME-hash.pth``, but not
    another model that starts alike (``resnet50d...`` is not ``resnet50``)."""
    stem = filename.split(".")[0]
    return stem == name or stem.startswith(name + "-")


def _candidates(folder: Path, name: str, max_depth: int = 4) -> list[Path]:
    # A weights dataset on Kaggle nests files a level or two down; don't walk a whole disk.
    found = []
    base = len(folder.parts)
    for dirpath, dirnames, filenames in os.walk(folder):
        if len(Path(dirpath).parts) - base >= max_depth:
            dirnames.clear()
        here = Path(dirpath)
        found += [here / f for f in filenames if _names(name, f) and f.endswith(WEIGHT_SUFFIXES)]
        if _names(name, here.name):  # e.g. efficientnet_lite0.ra_in1k/model.safetensors, a hub snapshot
            found += [here / f for f in filenames if f in HUB_FILE_NAMES]
    return sorted(found)


def _default_hub_id(name: str) -> str | None:
    cfg = timm.models.get_pretrained_cfg(name)
    return getattr(cfg, "hf_hub_id", None) if cfg is not None else None


def _hub_cache_file(name: str) -> Path | None:
    """The weights file timm would load, if the Hugging Face cache already holds it (no network access)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hub_id = _default_hub_id(name)
        if not hub_id:
            return None
        for filename in HUB_FILE_NAMES:
            hit = try_to_load_from_cache(hub_id, filename)
            if isinstance(hit, str):
                return Path(hit)
    except Exception:  # an odd cache or an old huggingface_hub: treat as "not cached"
        return None
    return None


def locate_weights(name: str, weights: str | Path | None = None) -> WeightsLocation | None:
    """The local weights file for backbone ``name`` and where it was found, or None. An explicit ``weights`` path
    (a file, or a folder holding ``NAME*.safetensors``) must exist."""
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_dir():
            hits = _candidates(path, name)
            if not hits:
                raise WeightsNotFound(f"no weights file for {name} ({name}*{{{','.join(WEIGHT_SUFFIXES)}}}) in {path}")
            return WeightsLocation(hits[0], f"file {hits[0]}")
        if not path.is_file():
            raise WeightsNotFound(f"weights file {path} does not exist")
        return WeightsLocation(path, f"file {path}")
    env = os.environ.get("KITBOX_WEIGHTS")
    if env:
        path = Path(env).expanduser()
        if path.is_file():
            return WeightsLocation(path, f"KITBOX_WEIGHTS {path}")
        if path.is_dir() and (hits := _candidates(path, name)):
            return WeightsLocation(hits[0], f"KITBOX_WEIGHTS {hits[0]}")
    if KAGGLE_INPUT.is_dir() and (hits := _candidates(KAGGLE_INPUT, name)):
        return WeightsLocation(hits[0], f"Kaggle input {hits[0]}")
    cached = _hub_cache_file(name)
    return WeightsLocation(cached, f"timm hub cache {cached}") if cached is not None else None


def find_weights(name: str, weights: str | Path | None = None) -> Path | None:
    """The local weights file for backbone ``name``, or None (:func:`locate_weights` also says where it was)."""
    found = locate_weights(name, weights)
    return found.path if found is not None else None


def _recipe(name: str) -> dict[str, str]:
    """The ways to supply weights for ``name``, one line each, keyed by kind."""
    hub_id = _default_hub_id(name) or f"timm/{name}"
    tagged = hub_id.split("/", 1)[-1]  # e.g. efficientnet_lite0.ra_in1k: timm's default weights for the name
    return {
        "offline": "  offline, a file you have: --weights PATH (create_model(..., weights=PATH)) or KITBOX_WEIGHTS=PATH, "
                   "PATH being the file or a folder holding it",
        "kaggle": f"  on Kaggle: attach a dataset holding {tagged}.safetensors to the notebook (Add Input); any file named "
                  f"{name}.*.safetensors (or .pth/.bin), or {tagged}/model.safetensors, is found anywhere under "
                  f"/kaggle/input",
        "online": f"  online: --download-weights (create_model(..., download=True)) fetches {hub_id} from the Hugging "
                  f"Face hub; or fetch once in Python: import timm; timm.create_model({name!r}, pretrained=True) "
                  f"(it lands in timm's hub cache, where kitbox finds it next time)",
        "make": f"  to make that file on a machine with Internet: python -c \"import timm, safetensors.torch as st; "
                f"st.save_file(timm.create_model({name!r}, pretrained=True).state_dict(), '{tagged}.safetensors')\"",
        "scratch": "  or train from random weights: --from-scratch (create_model(..., pretrained=False)); expect much "
                   "worse accuracy",
    }


def no_weights_message(name: str) -> str:
    """What to do when ``name`` has no weights here: the offline and online ways, each a step to follow."""
    return "\n".join([
        f"no pretrained weights for {name!r} on this machine (looked in --weights, $KITBOX_WEIGHTS, /kaggle/input and "
        f"timm's hub cache), and kitbox downloads nothing unasked. Any of these fixes it:",
        *_recipe(name).values(),
    ])


def download_failed_message(name: str, err: BaseException) -> str:
    """What failed when a download was attempted and could not reach the hub, and the offline ways instead."""
    recipe = _recipe(name)
    first = str(err).splitlines()[0] if str(err) else "no message"
    return "\n".join([
        f"downloading the pretrained weights of {name!r} ({_default_hub_id(name) or 'timm/' + name}) from the Hugging "
        f"Face hub failed ({type(err).__name__}: {first}): this machine cannot reach the hub (offline, behind a "
        f"proxy, or a Kaggle notebook with Internet off). Drop --download-weights and supply the file:",
        recipe["offline"], recipe["kaggle"], recipe["make"], recipe["scratch"],
    ])


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

    ``pretrained=False`` trains from scratch; otherwise weights come from :func:`locate_weights`, or from timm's hub
    when ``download=True`` and none is here. No weights raises :class:`WeightsNotFound`, a failed download
    :class:`WeightsDownloadFailed`, each saying how to supply them. ``model.weights_source`` records where the weights
    came from ("file PATH", "KITBOX_WEIGHTS PATH", "Kaggle input PATH", "timm hub cache PATH", "downloaded from the
    hub", "random (from scratch)"); ``model.weights_file`` the file, when there is one.
    ``cfg_overlay`` overrides the pretrained config (e.g. ``mean``/``std``), which the transforms read.
    """
    if name not in timm.list_models():
        raise ValueError(f"unknown timm model {name!r}; see timm.list_models('{name[:4]}*')")
    if not pretrained:
        model = timm.create_model(name, pretrained=False, num_classes=n_out, drop_rate=ps, in_chans=in_chans, **kwargs)
        model.weights_file, model.weights_source = None, "random (from scratch)"
        return model
    found = locate_weights(name, weights)
    if found is None and not download:
        raise WeightsNotFound(no_weights_message(name))
    overlay = dict(file=str(found.path), **_ported_norm(name, found.path)) if found is not None else {}
    overlay.update(cfg_overlay or {})
    try:
        model = timm.create_model(
            name, pretrained=True, pretrained_cfg_overlay=overlay or None, num_classes=n_out, drop_rate=ps,
            in_chans=in_chans, **kwargs,
        )
    except OSError as err:  # connection errors, the hub's "not in the local cache", HTTP errors are all OSErrors
        if found is not None:
            raise
        raise WeightsDownloadFailed(download_failed_message(name, err)) from err
    # timm keeps ImageNet's classifier when n_out happens to be 1000; the recipe wants a fresh head regardless.
    model.reset_classifier(n_out)
    if found is not None:
        model.weights_file, model.weights_source = str(found.path), found.source
    else:
        cached = _hub_cache_file(name)
        model.weights_file = str(cached) if cached is not None else "timm-hub"
        model.weights_source = "downloaded from the hub" + (f" ({cached})" if cached is not None else "")
    return model


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters are (CPU for a model without any)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def work_device(model: nn.Module) -> torch.device:
    """Where to run the model: where it is, unless that is the CPU and a GPU is there (a model fresh from
    :func:`create_model` sits on the CPU); under torchrun the GPU of this process's local rank."""
    own = model_device(model)
    if own.type == "cpu" and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return own


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
