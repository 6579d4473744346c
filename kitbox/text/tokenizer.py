"""Word tokenizer and vocabulary with fastai's special tokens, tuned for tweets.

Rules (applied in order): fix HTML entities, replace URLs / @mentions with ``xxurl`` / ``xxuser``,
mark hashtags with ``xxhash``, mark character and word repetition (``xxrep``, ``xxwrep``), and
lower-case words while keeping their case as ``xxup`` (ALL CAPS) or ``xxmaj`` (Capitalised).
"""
from __future__ import annotations

import html
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable
from kitbox.io.runs import private_tmp

UNK, PAD, BOS, EOS, FLD = "xxunk", "xxpad", "xxbos", "xxeos", "xxfld"
MAJ, UP, REP, WREP = "xxmaj", "xxup", "xxrep", "xxwrep"
URL, USER, HASH = "xxurl", "xxuser", "xxhash"
SPECIALS = (UNK, PAD, BOS, EOS, FLD, MAJ, UP, REP, WREP, URL, USER, HASH)

_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_USER_RE = re.compile(r"@\w+")
_HASH_RE = re.compile(r"#(\w+)")
_CHAR_REP_RE = re.compile(r"(\S)(\1{3,})")  # 4+ times the same character
# words (with inner apostrophes), numbers, or any single non-space symbol
_TOKEN_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*|\d+(?:[.,]\d+)*|xx\w+|\S")


@dataclass
class TextStats:
    """Counts of the odd inputs met while cleaning; a report, never an error."""

    n_texts: int = 0
    missing: int = 0  # None / NaN
    empty: int = 0  # blank after stripping
    non_utf8: int = 0  # bytes that did not decode as UTF-8 (replaced by U+FFFD)
    truncated: int = 0  # longer than ``max_tokens``

    def update(self, other: "TextStats") -> "TextStats":
        for name in ("n_texts", "missing", "empty", "non_utf8", "truncated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def as_dict(self) -> dict[str, int]:
        return dict(n_texts=self.n_texts, missing=self.missing, empty=self.empty,
                    non_utf8=self.non_utf8, truncated=self.truncated)


def to_text(value, stats: TextStats) -> str:
    """One cell of a text column as ``str``: missing -> "", bytes decoded leniently; counted in ``stats``."""
    stats.n_texts += 1
    if value is None or (isinstance(value, float) and math.isnan(value)):
        stats.missing += 1
        return ""
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", errors="replace")
    else:
        text = str(value)
    if "\ufffd" in text:  # undecodable bytes, here or when the CSV was read with encoding_errors="replace"
        stats.non_utf8 += 1
    if not text.strip():
        stats.empty += 1
    return text


def _case_tokens(word: str) -> list[str]:
    if len(word) > 1 and word.isupper() and any(c.isalpha() for c in word):
        return [UP, word.lower()]
    if word[:1].isupper() and word[1:].islower():
        return [MAJ, word.lower()]
    return [word.lower()]


def tokenize(text: str, max_tokens: int | None = None) -> tuple[list[str], bool]:
    """``text`` -> (tokens starting with ``xxbos``, whether it was cut at ``max_tokens``)."""
    text = html.unescape(text)
    text = _URL_RE.sub(f" {URL} ", text)
    text = _USER_RE.sub(f" {USER} ", text)
    text = _HASH_RE.sub(lambda m: f" {HASH} {m.group(1)} ", text)
    text = _CHAR_REP_RE.sub(lambda m: f" {REP} {len(m.group(0))} {m.group(1)} ", text)
    words = _TOKEN_RE.findall(text)
    tokens = [BOS]
    i = 0
    while i < len(words):
        word = words[i]
        run = 1
        while i + run < len(words) and words[i + run].lower() == word.lower():
            run += 1
        if run >= 3:  # "fire fire fire fire" -> xxwrep 4 fire
            tokens += [WREP, str(run)]
        tokens += [word] if word.startswith("xx") or word.isdigit() else _case_tokens(word)
        i += run if run >= 3 else 1
    truncated = max_tokens is not None and len(tokens) > max_tokens
    return (tokens[:max_tokens] if truncated else tokens), truncated


class Tokenizer:
    """Cleans and tokenizes a column of texts, counting missing / empty / non-UTF-8 / over-long ones."""

    def __init__(self, max_tokens: int = 256):
        self.max_tokens = max_tokens
        self.stats = TextStats()

    def __call__(self, texts: Iterable) -> list[list[str]]:
        out = []
        for value in texts:
            tokens, cut = tokenize(to_text(value, self.stats), self.max_tokens)
            self.stats.truncated += cut
            out.append(tokens)
        return out


@dataclass
class Vocab:
    """Token <-> id mapping; the special tokens come first so ``xxunk`` is 0 and ``xxpad`` is 1."""

    itos: list[str]
    stoi: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    @classmethod
    def build(cls, token_lists: Iterable[list[str]], max_size: int = 8000, min_freq: int = 2) -> "Vocab":
        counts = Counter(t for tokens in token_lists for t in tokens)
        for s in SPECIALS:
            counts.pop(s, None)
        words = [w for w, c in counts.most_common(max_size) if c >= min_freq]
        return cls(list(SPECIALS) + words)

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def pad_id(self) -> int:
        return self.stoi[PAD]

    def numericalize(self, tokens: list[str]) -> list[int]:
        unk = self.stoi[UNK]
        return [self.stoi.get(t, unk) for t in tokens]

    def textify(self, ids: Iterable[int]) -> str:
        return " ".join(self.itos[int(i)] for i in ids)

    def save(self, path: Path) -> None:
        path = Path(path)
        tmp = private_tmp(path)
        tmp.write_text(json.dumps(self.itos, ensure_ascii=False))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "Vocab":
        return cls(json.loads(Path(path).read_text()))


_NOT_WORD_RE = re.compile(r"[^\w#]+")


def duplicate_key(value) -> str:
    """What two texts share when one is a copy of the other: lower case, links and @names dropped, HTML entities
    decoded, punctuation and spacing ignored. "Forest fire near La Ronge http://t.co/x" and "forest fire near la
    ronge!!" get one key (retweets and reposts of one message; Disaster Tweets has hundreds)."""
    text = html.unescape(value if isinstance(value, str) else "").lower()
    text = _USER_RE.sub(" ", _URL_RE.sub(" ", text))
    return " ".join(_NOT_WORD_RE.sub(" ", text).split())


LONG_TEXT = 10_000  # characters: longer cells are noted (every recipe cuts them to its token budget)


def text_notes(df, columns: list[str], where: str) -> list[str]:
    """Run-summary notes on a table's odd text cells: rows with no text at all, cells holding bytes that were not
    UTF-8 (replaced by U+FFFD when the CSV was read), very long texts. Nothing is dropped: models see "" for a
    missing text and the first tokens of a long one."""
    stats = {"empty rows": [], "non-UTF-8": [], "long": []}
    cells = [df[c].tolist() for c in columns if c in df.columns]
    for row, values in enumerate(zip(*cells)):
        texts = [to_text(v, TextStats()) for v in values]
        if not any(t.strip() for t in texts):
            stats["empty rows"].append(row)
        if any("\ufffd" in t for t in texts):
            stats["non-UTF-8"].append(row)
        if any(len(t) > LONG_TEXT for t in texts):
            stats["long"].append(row)
    said = {"empty rows": f"row(s) with no text in {columns} (the models see an empty text)",
            "non-UTF-8": "row(s) with bytes that are not UTF-8, read as U+FFFD",
            "long": f"row(s) with a text over {LONG_TEXT:,} characters (each recipe keeps its first tokens)"}
    return [f"{where}: {len(rows)} {said[kind]}, e.g. row(s) {rows[:5]}" for kind, rows in stats.items() if rows]
