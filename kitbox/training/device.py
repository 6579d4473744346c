"""Where and how a model trains, chosen in one place: the device, the precision (autocast, loss scaling), the memory
format, fused AdamW and torch.compile (the Learner asks :func:`choose` once); and the random states, CPU and CUDA,
that a run seeds and that lr_find puts back."""
from __future__ import annotations

import contextlib
import copy
import os
import random
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) so a rerun gives identical losses on CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def rng_state() -> dict:
    """Python, numpy and torch random states; CUDA's only once CUDA is initialised (reading it would start CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def restored_afterwards(model: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler):
    """Run a block that trains, then put back all that training changes: the weights and buffers, the optimizer, the
    GradScaler, and the Python / numpy / torch CPU / CUDA random states. A loader with its own generator (a seeded
    TensorLoader or DataLoader) is not rewound: a pass over it inside the block still uses up a shuffle."""
    model_state = copy.deepcopy(model.state_dict())
    opt_state = copy.deepcopy(opt.state_dict())
    scaler_state, rng = scaler.state_dict(), rng_state()
    try:
        yield
    finally:
        model.load_state_dict(model_state)
        opt.load_state_dict(opt_state)
        opt.zero_grad(set_to_none=True)
        scaler.load_state_dict(scaler_state)
        set_rng_state(rng)


def choose_device(device=None) -> torch.device:
    """CUDA when present (each torchrun rank on the GPU of its LOCAL_RANK), else the CPU; ``device`` forces one."""
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device is None:
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"device={str(device)!r} was asked for, but torch sees no CUDA GPU (torch {torch.__version__}, built for "
            f"CUDA {torch.version.cuda}); check nvidia-smi and the torch build, or pass device='cpu'")
    return torch.device("cuda", local_rank) if device.index is None else device


def choose_precision(precision: str, device: torch.device) -> str:
    """Resolve ``precision``: "auto" is bf16 on GPUs with bf16, fp16 on those without (T4, P100), fp32 on the CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    # including_emulation=False: a T4 "supports" bf16 only by emulation, far slower than fp16
    has_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    if precision == "auto":
        return "fp32" if device.type != "cuda" else ("bf16" if has_bf16 else "fp16")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision='fp16' (autocast + GradScaler) needs a CUDA GPU; on the CPU use 'bf16' or 'fp32'")
    if precision == "bf16" and device.type == "cuda" and not has_bf16:
        raise ValueError("this GPU has no native bf16 (T4, P100 and older); use precision='fp16' or 'auto'")
    return precision


def is_conv_net(model: nn.Module) -> bool:
    """True for models with 4-D (2-D convolution) weights, the ones channels_last speeds up on GPUs."""
    return any(p.ndim == 4 for p in model.parameters())


@dataclass(frozen=True)
class DeviceSetup:
    """What :func:`choose` decided. ``compile`` is False, True (inductor) or a torch.compile backend."""

    device: torch.device
    precision: str  # resolved: "fp32", "bf16" or "fp16"
    channels_last: bool
    compile: bool | str | Callable = False

    @property
    def scales_loss(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none."""
        return self.precision == "fp16"

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.precision])

    def grad_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device.type, enabled=self.scales_loss)

    def optimizer_options(self) -> dict:
        """fused AdamW on CUDA: one kernel for the whole update instead of one per parameter tensor."""
        return {"fused": True} if self.device.type == "cuda" else {}

    def place_model(self, model: nn.Module) -> nn.Module:
        if self.channels_last:
            return model.to(self.device, memory_format=torch.channels_last)
        return model.to(self.device)

    def place_input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def place_batch(self, batch) -> tuple[tuple, torch.Tensor | None]:
        """Split a batch into (inputs tuple, target or None) on the device."""
        inputs, target = (batch[0], batch[1]) if len(batch) > 1 else (batch[0], None)
        inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
        target = target.to(self.device, non_blocking=True) if target is not None else None
        return tuple(self.place_input(x) for x in inputs), target

    def describe(self) -> str:
        """One line for a run summary, e.g. "cuda:0 NVIDIA T4, fp16 autocast + GradScaler, channels_last"."""
        if self.device.type == "cuda":
            where = f"{self.device} {torch.cuda.get_device_name(self.device)}"
        else:
            where = str(self.device)
        precision = {"fp32": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast + GradScaler"}[self.precision]
        parts = [where, precision]
        if self.device.type == "cpu":
            threads = torch.get_num_threads()
            parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
        if self.channels_last:
            parts.append("channels_last")
        if self.compile:
            parts.append("torch.compile" if self.compile is True else f"torch.compile({self.compile})")
        return ", ".join(parts)


def choose(model: nn.Module, device=None, precision: str = "auto", channels_last: bool | None = None,
           compile: bool | str | Callable = False) -> DeviceSetup:
    """The one decision: ``channels_last=None`` turns it on for conv nets on CUDA (off elsewhere: the CPU gains
    nothing from it)."""
    device = choose_device(device)
    if channels_last is None:
        channels_last = device.type == "cuda" and is_conv_net(model)
    return DeviceSetup(device, choose_precision(precision, device), channels_last, compile)


class CompiledModel(nn.Module):
    """``model`` run through torch.compile, falling back to the model itself for good, with one line, when compiling
    fails. torch.compile is lazy (a missing C compiler or an unsupported op shows only at the first call), so the
    first call is the one that is checked. Only ``model`` is a submodule: parameters and state stay the model's."""

    def __init__(self, model: nn.Module, backend: bool | str | Callable = True):
        super().__init__()
        self.model = model
        self.checked = False
        try:
            self.compiled_forward = torch.compile(model.forward, **({} if backend is True else {"backend": backend}))
        except Exception as error:  # e.g. a Python version this torch's compiler does not support yet
            self._fall_back(error)

    def _fall_back(self, error: Exception) -> None:
        # dynamo wraps the backend's own error (BackendCompilerFailed.inner_exception): name the one that says why
        while (inner := getattr(error, "inner_exception", None) or error.__cause__) is not None:
            error = inner
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        print(f"torch.compile failed ({type(error).__name__}: {first_line}); training without it")
        self.compiled_forward, self.checked = None, True

    def forward(self, *inputs):
        if self.compiled_forward is None:
            return self.model(*inputs)
        if self.checked:
            return self.compiled_forward(*inputs)
        try:
            out = self.compiled_forward(*inputs)
        except Exception as error:  # the model itself is run next: a real error in it is raised from there
            self._fall_back(error)
            return self.model(*inputs)
        self.checked = True
        return out
