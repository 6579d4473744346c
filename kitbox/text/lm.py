"""The ULMFiT language-model stage: an AWD-LSTM trained once on every text of a competition (train + test, no
labels), cached in a folder, evaluated by perplexity; plus saving / loading encoder weights.

``language_model(tokens, cache_dir, LMSettings(...))`` trains the model the first time and loads it every time
after, so each fold's classifier starts from the same encoder.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kitbox.io.runs import one_time_work, private_tmp
from kitbox.text.awd_lstm import AWDConfig, LanguageModel
from kitbox.text.tokenizer import Vocab

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LMSettings:
    """How the language model trains; the defaults were chosen on Disaster Tweets (~250k tokens)."""

    epochs: int = 4  # more epochs lower the perplexity further without helping the classifier
    lr: float = 1e-2  # one-cycle peak; half of it left the encoder's features collapsed
    bs: int = 32  # small batches: more optimizer steps, which an LM on a small corpus needs most
    bptt: int = 35  # short windows: more steps per epoch
    max_vocab: int = 6000
    min_freq: int = 2
    emb_size: int = 200
    n_hid: int = 400
    word_vectors: str | None = None  # a Hugging Face model folder whose word-piece vectors start the embedding
    valid_frac: float = 0.1  # texts held out for the perplexity
    seed: int = 42
    device: str | None = None
    progress: bool = False


@dataclass
class PretrainedLM:
    """What a fold's classifier starts from: the encoder's weights, the vocabulary and the model's sizes."""

    encoder_state: dict[str, torch.Tensor]
    vocab: Vocab
    config: AWDConfig
    metrics: dict = field(default_factory=dict)
    trained_now: bool = False  # False when the cache was reused


def tokens_digest(tokens: list[list[str]]) -> str:
    h = hashlib.sha1()
    for row in tokens:
        h.update(("\x1f".join(row) + "\x1e").encode("utf-8"))
    return h.hexdigest()[:16]


def language_model(tokens: list[list[str]], cache_dir, settings: LMSettings = LMSettings()) -> PretrainedLM:
    """The LM for ``tokens`` (every text of the competition), trained once and cached in ``cache_dir``.

    A cache made from other texts is an error, never silently reused: the caller's cache folder belongs to one
    configuration (kitbox's ``ctx.shared_dir``), so different texts there mean a mix-up worth stopping for.
    """
    from kitbox.io.runs import read_json

    cache_dir = Path(cache_dir)
    digest = tokens_digest(tokens)
    if (cache_dir / "done.json").exists():
        done = read_json(cache_dir / "done.json")
        if done.get("tokens") != digest:
            raise ValueError(f"{cache_dir} holds a language model trained on other texts ({done.get('tokens')} != "
                             f"{digest}); move that folder aside or give another cache folder")
        return PretrainedLM(load_state(cache_dir / "encoder.safetensors"), Vocab.load(cache_dir / "vocab.json"),
                            AWDConfig(**done["config"]), done["metrics"], trained_now=False)
    with one_time_work():
        return _train_language_model(tokens, cache_dir, settings, digest)


def _train_language_model(tokens, cache_dir: Path, s: LMSettings, digest: str) -> PretrainedLM:
    from kitbox.training.learner import Learner
    from kitbox.io.runs import write_json
    from kitbox.training.tasks import Task
    from kitbox.text.data import LMLoader

    cache_dir.mkdir(parents=True, exist_ok=True)
    vocab = Vocab.build(tokens, max_size=s.max_vocab, min_freq=s.min_freq)
    ids = [vocab.numericalize(t) for t in tokens]
    order = np.random.default_rng(s.seed).permutation(len(ids))
    n_valid = max(int(len(ids) * s.valid_frac), 1)
    valid_ids, train_ids = [ids[i] for i in order[:n_valid]], [ids[i] for i in order[n_valid:]]
    cfg = AWDConfig(vocab_size=len(vocab), pad_id=vocab.pad_id, emb_size=s.emb_size, n_hid=s.n_hid)
    from kitbox.training.device import seed_everything

    seed_everything(s.seed)  # the LM's initial weights come from the seed too
    model = LanguageModel(cfg)
    vectors_from = init_word_vectors(model, vocab, s.word_vectors, s.seed)
    train_dl = LMLoader(train_ids, batch_size=s.bs, bptt=s.bptt, seed=s.seed)
    valid_dl = LMLoader(valid_ids, batch_size=min(s.bs, 16), bptt=70, shuffle=False)
    learn = Learner(model, train_dl, task=Task("multiclass", n_out=len(vocab)), wd=0.1, clip=0.4, run_dir=cache_dir,
                    seed=s.seed, device=s.device, progress=s.progress)
    start = time.perf_counter()
    learn.fit_one_cycle(s.epochs, s.lr, moms=(0.8, 0.7, 0.8))
    seconds = time.perf_counter() - start
    metrics = evaluate_lm(learn.model, valid_dl)
    metrics.update(word_vectors=vectors_from, epochs=s.epochs, seconds=seconds, train_tokens=train_dl.n_tokens,
                   valid_tokens=valid_dl.n_tokens, vocab_size=len(vocab),
                   tokens_per_s=train_dl.n_tokens * s.epochs / max(seconds, 1e-9))
    state = {k: v.detach().cpu() for k, v in learn.model.encoder.state_dict().items()}
    save_state(state, cache_dir / "encoder.safetensors")
    vocab.save(cache_dir / "vocab.json")
    settings = {k: v for k, v in asdict(s).items() if k not in ("device", "progress")}
    # done.json last: its presence marks the cache complete
    write_json(cache_dir / "done.json", {"config": cfg.as_dict(), "metrics": metrics, "tokens": digest,
                                         "settings": settings})
    log.info("language model: perplexity %.1f, next-token accuracy %.3f", metrics["perplexity"], metrics["accuracy"])
    return PretrainedLM(state, vocab, cfg, metrics, trained_now=True)


def init_word_vectors(model: LanguageModel, vocab: Vocab, source, seed: int) -> str:
    """Start the LM's (tied) embedding from a transformer's word-piece vectors (``source``: its folder), or leave
    the random init (``source`` None). Returns what was used, for the metrics."""
    if source is None:
        return "random"
    from kitbox.text.transformer import word_vectors_from_transformer

    vectors, found = word_vectors_from_transformer(vocab.itos, source, dim=model.encoder.embedding.weight.shape[1],
                                                   seed=seed)
    with torch.no_grad():
        model.encoder.embedding.weight.copy_(vectors)
    return f"{source} ({found} of {len(vocab)} words)"


@torch.no_grad()
def evaluate_lm(model: torch.nn.Module, loader) -> dict[str, float]:
    """Mean cross-entropy, perplexity and next-token accuracy over ``loader``'s (x, y) batches, streamed
    (a batch's logits are never kept, so a large vocabulary costs no memory)."""
    model.eval()
    device = next(model.parameters()).device
    total_loss, correct, count = 0.0, 0, 0
    for x, y in loader:
        logits = model(x.to(device))
        y = y.to(device)
        total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(-1) == y).sum())
        count += y.numel()
    if count == 0:
        raise ValueError("evaluate_lm: the loader yielded no tokens")
    loss = total_loss / count
    return {"loss": loss, "perplexity": math.exp(loss), "accuracy": correct / count, "tokens": count}


def save_state(state: dict[str, torch.Tensor], path) -> Path:
    """Write a state dict as safetensors, atomically (a half-written file is never left under ``path``)."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = private_tmp(path)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, path)
    return path


def load_state(path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))
