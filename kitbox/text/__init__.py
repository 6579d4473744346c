"""Text modality: tweet-aware tokenizer and vocabulary, bucketed batches, AWD-LSTM (ULMFiT) with its cached language
model, and pretrained transformers (fine-tuned, or frozen as sentence vectors)."""
from kitbox.text.awd_lstm import AWDConfig, AWDLSTMEncoder, LanguageModel, TextClassifier
from kitbox.text.data import BucketLoader, LMLoader, pad_sequences
from kitbox.text.lm import LMSettings, PretrainedLM, evaluate_lm, language_model
from kitbox.text.tokenizer import SPECIALS, TextStats, Tokenizer, Vocab, tokenize
from kitbox.text.transformer import (TransformerClassifier, default_model_path, encode_texts, load_pretrained,
                                     sentence_embeddings)

__all__ = [
    "AWDConfig", "AWDLSTMEncoder", "LanguageModel", "TextClassifier",
    "BucketLoader", "LMLoader", "pad_sequences",
    "LMSettings", "PretrainedLM", "evaluate_lm", "language_model",
    "SPECIALS", "TextStats", "Tokenizer", "Vocab", "tokenize",
    "TransformerClassifier", "default_model_path", "encode_texts", "load_pretrained", "sentence_embeddings",
]
