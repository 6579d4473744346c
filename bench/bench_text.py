"""Tokens/s of the text training step: kitbox's Learner against a hand-written loop over the same model and the same
batches, in the same process (issue 6; goal >= 0.95x).

    nohup python bench/bench_text.py --model ulmfit --rounds 3 --threads 2 > /tmp/bench_text.log 2>&1 &
    nohup python bench/bench_text.py --model transformer --batches 20 --rounds 2 > /tmp/bench_text_tf.log 2>&1 &

The batches (real tweets, length-bucketed, padded per batch) are built once and replayed by both loops; both start
from the same weights with the same AdamW settings, clipping and loss. Rounds alternate (hand-written, Learner, ...)
so a neighbour's load on a shared machine hits both alike; the ratio of median tokens/s is the figure to quote.
Tokens are the real (unpadded) tokens of each batch.
"""
import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from kitbox.training.learner import Learner
from kitbox.training.tasks import Task
from kitbox.text import AWDConfig, BucketLoader, TextClassifier, Tokenizer, Vocab

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "nlp-getting-started"
SAMPLE = REPO / "competitions" / "samples" / "nlp-getting-started"


def read_tweets() -> pd.DataFrame:
    for folder, name in ((SHARED, "train.csv"), (SAMPLE, "train.csv.gz")):
        if (folder / name).exists():
            return pd.read_csv(folder / name)
    raise FileNotFoundError(f"no train.csv in {SHARED} or {SAMPLE}")


def make_batches(kind: str, df: pd.DataFrame, n_batches: int, bs: int, seed: int = 0):
    """(model factory, list of batches, real tokens per batch) for the ULMFiT classifier or the transformer."""
    y = df["target"].to_numpy(np.float32)
    if kind == "ulmfit":
        tokens = Tokenizer()(df["text"])
        vocab = Vocab.build(tokens, max_size=6000)
        ids = [vocab.numericalize(t) for t in tokens]
        cfg = AWDConfig(vocab_size=len(vocab), pad_id=vocab.pad_id, drop_mult=0.5)
        loader = BucketLoader(ids, y, bs, shuffle=True, seed=seed, pad_id=vocab.pad_id, mode="lengths")
        factory = lambda: TextClassifier(cfg, n_out=1)  # noqa: E731
    else:
        from kitbox.text import TransformerClassifier, encode_texts, load_pretrained

        tokenizer, backbone = load_pretrained()
        backbone.embeddings.word_embeddings.weight.requires_grad_(False)  # as the recipe does
        ids = encode_texts(tokenizer, df["text"], max_length=96)
        loader = BucketLoader(ids, y, bs, shuffle=True, seed=seed, pad_id=tokenizer.pad_token_id, mode="mask")
        factory = lambda: TransformerClassifier(copy.deepcopy(backbone), n_out=1)  # noqa: E731
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == n_batches:
            break
    real = [int(b[0][1].sum()) for b in batches]  # lengths (LSTM) or attention mask (transformer) sum to real tokens
    return factory, batches, real


def param_groups(model, wd):
    """Weight decay on weights, none on biases and norms: the split the Learner makes, in one group each."""
    params = [p for p in model.parameters() if p.requires_grad]
    norms = {id(p) for m in model.modules() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.LayerNorm))
             for p in m.parameters(recurse=False)}
    decay = [p for p in params if p.ndim > 1 and id(p) not in norms]
    rest = [p for p in params if p.ndim <= 1 or id(p) in norms]
    return [{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}]


def hand_loop(model, batches, lr, wd, clip) -> float:
    """The baseline: forward, BCE-with-logits, backward, clip, AdamW step. Nothing else. Returns seconds."""
    opt = torch.optim.AdamW(param_groups(model, wd), lr=lr, betas=(0.9, 0.99), eps=1e-5)
    model.train()
    t0 = time.perf_counter()
    for inputs, target in batches:
        loss = F.binary_cross_entropy_with_logits(model(*inputs).squeeze(-1), target.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()  # the Learner reads every loss on CPU (NaN guard, progress); so does the baseline
    return time.perf_counter() - t0


def learner_loop(model, batches, lr, wd, clip) -> float:
    learn = Learner(model, batches, task=Task("binary"), wd=wd, clip=clip, progress=False, device="cpu")
    t0 = time.perf_counter()
    learn.fit_one_cycle(1, lr)
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("ulmfit", "transformer"), default="ulmfit")
    p.add_argument("--batches", type=int, default=60)
    p.add_argument("--bs", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    lr, wd, clip = (2e-3, 0.1, 0.4) if args.model == "ulmfit" else (5e-5, 0.01, 1.0)
    factory, batches, real = make_batches(args.model, read_tweets(), args.batches, args.bs)
    n_tokens = sum(real)
    torch.manual_seed(0)
    initial = factory().state_dict()
    rates = {"hand": [], "learner": []}
    for r in range(args.rounds):
        for name, loop in (("hand", hand_loop), ("learner", learner_loop)):
            torch.manual_seed(r)  # same dropout masks for both loops within a round
            model = factory()
            model.load_state_dict(initial)
            seconds = loop(model, batches, lr, wd, clip)
            rates[name].append(n_tokens / seconds)
            print(f"round {r + 1} {name:8s} {n_tokens / seconds:9.0f} tokens/s ({seconds:.1f} s)", flush=True)
    hand, learner = statistics.median(rates["hand"]), statistics.median(rates["learner"])
    print(json.dumps({"model": args.model, "batches": len(batches), "tokens": n_tokens, "threads": args.threads,
                      "hand_tokens_per_s": round(hand), "learner_tokens_per_s": round(learner),
                      "ratio": round(learner / hand, 3)}))


if __name__ == "__main__":
    main()
