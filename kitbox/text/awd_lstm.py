"""AWD-LSTM (Merity et al. 2017) sized for a CPU: the encoder, its language model with tied weights, and the
ULMFiT classifier with concat pooling and layer groups for gradual unfreezing (Howard & Ruder 2018).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


@dataclass
class AWDConfig:
    """Sizes and dropouts; fastai's dropout defaults, scaled together by ``drop_mult``."""

    vocab_size: int
    emb_size: int = 200  # also the last LSTM's output size, so the decoder can share the embedding
    n_hid: int = 400
    n_layers: int = 3
    pad_id: int = 1
    embed_p: float = 0.02  # drops whole words (rows of the embedding matrix)
    input_p: float = 0.25  # on the embeddings, same mask at every time step
    hidden_p: float = 0.15  # between LSTM layers, same mask at every time step
    weight_p: float = 0.2  # DropConnect on the hidden-to-hidden weights
    output_p: float = 0.1  # before the LM decoder
    drop_mult: float = 1.0

    def as_dict(self) -> dict:
        return asdict(self)


class LockedDropout(nn.Module):
    """Dropout with one mask per sequence, shared over time steps (variational dropout). Input (b, t, d)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - self.p) / (1 - self.p)
        return x * mask


class WeightDropLSTM(nn.Module):
    """A one-layer LSTM whose hidden-to-hidden weights get DropConnect while training."""

    def __init__(self, n_in: int, n_out: int, weight_p: float):
        super().__init__()
        self.lstm = nn.LSTM(n_in, n_out, batch_first=True)
        self.weight_p = weight_p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.weight_p > 0:
            # functional_call swaps in the dropped weight for this call only; the parameter itself is untouched
            dropped = F.dropout(self.lstm.weight_hh_l0, self.weight_p, training=True)
            out, _ = functional_call(self.lstm, {"weight_hh_l0": dropped}, (x,))
        else:
            out, _ = self.lstm(x)
        return out


class AWDLSTMEncoder(nn.Module):
    """Token ids (b, t) -> last layer's hidden states (b, t, emb_size)."""

    def __init__(self, cfg: AWDConfig):
        super().__init__()
        self.cfg = cfg
        m = cfg.drop_mult
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.emb_size, padding_idx=cfg.pad_id)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        self.embed_p = cfg.embed_p * m
        self.input_dropout = LockedDropout(cfg.input_p * m)
        sizes = [cfg.emb_size] + [cfg.n_hid] * (cfg.n_layers - 1) + [cfg.emb_size]
        self.rnns = nn.ModuleList(WeightDropLSTM(sizes[i], sizes[i + 1], cfg.weight_p * m) for i in range(cfg.n_layers))
        self.hidden_dropouts = nn.ModuleList(LockedDropout(cfg.hidden_p * m) for _ in range(cfg.n_layers - 1))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        weight = self.embedding.weight
        if self.training and self.embed_p > 0:
            # drop whole words: the same word vanishes everywhere in the batch
            keep = weight.new_empty(weight.shape[0], 1).bernoulli_(1 - self.embed_p) / (1 - self.embed_p)
            weight = weight * keep
        return F.embedding(ids, weight, padding_idx=self.cfg.pad_id)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.input_dropout(self.embed(ids))
        for i, rnn in enumerate(self.rnns):
            x = rnn(x)
            if i < len(self.hidden_dropouts):
                x = self.hidden_dropouts[i](x)
        return x

    def layer_groups(self) -> list[nn.Module]:
        return [self.embedding, *self.rnns]


class LanguageModel(nn.Module):
    """Encoder + a decoder tied to the embedding. Returns next-token logits flattened to (b * t, vocab)."""

    def __init__(self, cfg: AWDConfig):
        super().__init__()
        self.encoder = AWDLSTMEncoder(cfg)
        self.output_dropout = LockedDropout(cfg.output_p * cfg.drop_mult)
        self.decoder = nn.Linear(cfg.emb_size, cfg.vocab_size)
        self.decoder.weight = self.encoder.embedding.weight  # tied weights

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden = self.output_dropout(self.encoder(ids))
        return self.decoder(hidden).reshape(-1, self.decoder.out_features)


class TextClassifier(nn.Module):
    """ULMFiT classifier: encoder, concat pooling of [last, max, mean] hidden state, a small MLP head.

    ``forward(ids, lengths)`` with ids padded at the end; padding never enters the pooling.
    """

    def __init__(self, cfg: AWDConfig, n_out: int = 1, n_lin: int = 50, ps: tuple[float, float] = (0.4, 0.1)):
        super().__init__()
        self.encoder = AWDLSTMEncoder(cfg)
        d = cfg.emb_size * 3
        self.head = nn.Sequential(
            nn.BatchNorm1d(d), nn.Dropout(ps[0] * cfg.drop_mult), nn.Linear(d, n_lin), nn.ReLU(),
            nn.BatchNorm1d(n_lin), nn.Dropout(ps[1] * cfg.drop_mult), nn.Linear(n_lin, n_out),
        )

    def pool(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.clamp(min=1).to(hidden.device)
        mask = (torch.arange(hidden.shape[1], device=hidden.device) < lengths[:, None]).unsqueeze(-1)
        last = hidden[torch.arange(hidden.shape[0], device=hidden.device), lengths - 1]
        maxed = hidden.masked_fill(~mask, float("-inf")).max(1).values
        mean = (hidden * mask).sum(1) / lengths[:, None].to(hidden.dtype)
        return torch.cat([last, maxed, mean], 1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.encoder(ids), lengths))

    def layer_groups(self) -> list[nn.Module]:
        """[embedding, lstm 1, ..., lstm n, head]: freeze_to(-1) trains the head, -2 adds the last LSTM..."""
        return [*self.encoder.layer_groups(), self.head]
