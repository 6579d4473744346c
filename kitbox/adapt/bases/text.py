"""Free text (Disaster Tweets): ``TextCompetition``."""
from __future__ import annotations

import numpy as np

from kitbox.adapt.bases.table import TableCompetition, _require, is_text
from kitbox.adapt.contract import CompetitionData
from kitbox.errors import InputError


class TextCompetition(TableCompetition):
    """One or more free-text columns. Default recipes: TF-IDF + logistic regression and frozen sentence vectors
    (the cheap baselines), a fine-tuned transformer and ULMFiT."""

    text_cols: list[str] | None = None  # default: every text column of train and test, the longest last
    # rows whose main (longest, last) text column is the same message once links, @names, case and punctuation
    # are set aside (kitbox.text.tokenizer.duplicate_key) stay in one fold; off: copies may straddle folds
    group_duplicates: bool = False

    def build_data(self, data_dir, train, test, sample, sample_path) -> CompetitionData:
        data = super().build_data(data_dir, train, test, sample, sample_path)
        if self.text_cols is not None:
            _require(data.train, self.text_cols, self.train_file)
            _require(data.test, self.text_cols, self.test_file)
            data.columns.text = list(self.text_cols)
        else:
            skip = {data.columns.id, *data.columns.target, *self.drop_cols}
            found = [c for c in data.train.columns if c not in skip and c in data.test.columns
                     and is_text(data.train[c])]
            if not found:
                raise InputError(f"{self.train_file} has no text column besides the id and target; set text_cols")
            lengths = {c: data.train[c].fillna("").astype(str).str.len().mean() for c in found}
            data.columns.text = sorted(found, key=lengths.get)
        from kitbox.text.tokenizer import text_notes

        for df, where in ((data.train, self.train_file), (data.test, self.test_file)):
            for c in data.columns.text:
                df[c] = df[c].astype("object").where(df[c].notna(), None)
            data.notes += text_notes(df, data.columns.text, where)  # empty, undecodable or very long texts, counted
        return data

    def fold_groups(self, data: CompetitionData):
        groups = super().fold_groups(data)
        if groups is not None or not self.group_duplicates:
            return groups
        from kitbox.text.tokenizer import duplicate_key

        return np.array([duplicate_key(t) for t in data.train[data.columns.text[-1]]], dtype=object)

    def recipes(self):
        from kitbox.recipes import text

        return {"tfidf": text.tfidf, "sentence_vectors": text.sentence_vectors, "transformer": text.transformer,
                "ulmfit": text.ulmfit}
