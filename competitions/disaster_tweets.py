"""Natural Language Processing with Disaster Tweets (Kaggle ``nlp-getting-started``; metric F1): is a tweet about a
real disaster? A recipe card on :class:`kitbox.TextCompetition`: the files, the metric, the text columns and the
recipes with their defaults. The base picks the F1 cut on the blended OOF predictions (``decide``) and writes the
0/1 labels; measured figures live in the project's results table.

- ``tfidf``: word and character n-grams with logistic regression, the cheap baseline of the blend.
- ``sentence_vectors``: frozen all-MiniLM-L6-v2 sentence embeddings with logistic regression. A stronger encoder is
  one option away: ``--set sentence_vectors.model=DIR`` with a Hugging Face folder such as all-mpnet-base-v2 (better
  vectors, about eight times the embedding time on a CPU; computed once per configuration).
- ``transformer``: all-MiniLM-L6-v2 fine-tuned end to end with layer-wise LR decay.
- ``ulmfit``: an AWD-LSTM language model trained once on every tweet (train + test, no labels), fine-tuned into a
  classifier per fold (every layer, one cycle; the paper's gradual unfreezing is ``--set schedule=gradual``).
"""
from __future__ import annotations

from pathlib import Path

from kitbox.adapt.bases import TextCompetition
from kitbox.errors import InputError
from kitbox.recipes import text


class DisasterTweets(TextCompetition):
    slug = "nlp-getting-started"
    aliases = ("disaster-tweets",)
    metric_name = "f1"
    title = "Natural Language Processing with Disaster Tweets"
    sample_dir = Path(__file__).resolve().parent / "samples" / "nlp-getting-started"
    id_col = "id"
    target = "target"
    task = "binary"
    positive_class = 1
    text_cols = ["keyword", "location", "text"]  # joined in this order: "forest fire | La Ronge | Smoke ..."

    def build_data(self, data_dir, train, test, sample, sample_path):
        bad = sorted(set(train["target"].dropna().unique().tolist()) - {0, 1}) if "target" in train else []
        if bad or ("target" in train and train["target"].isna().any()):
            raise InputError(f"{Path(data_dir) / self.train_file}: column 'target' must be 0 or 1 on every row, "
                             f"found {bad or 'missing values'}")
        data = super().build_data(data_dir, train, test, sample, sample_path)
        for df in (data.train, data.test):  # Kaggle wrote the keywords URL-encoded: "forest%20fire"
            df["keyword"] = [k.replace("%20", " ") if isinstance(k, str) else k for k in df["keyword"]]
        return data

    def recipes(self):
        return {
            "tfidf": text.tfidf,
            "sentence_vectors": text.sentence_vectors,
            "transformer": text.transformer,
            "ulmfit": text.ulmfit,
        }
