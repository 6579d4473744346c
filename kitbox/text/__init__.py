"""Text modality: tweet-aware tokenizer and vocabulary, bucketed batches, AWD-LSTM (ULMFiT) and pretrained transformers."""
from kitbox.text.awd_lstm import AWDConfig, AWDLSTMEncoder, LanguageModel, TextClassifier
from kitbox.text.data import BucketLoader, LMLoader, pad_sequences
from kitbox.text.tokenizer import SPECIALS, TextStats, Tokenizer, Vocab, tokenize
from kitbox.text.transformer import TransformerClassifier, default_model_path, encode_texts, load_pretrained

__all__ = [
    "AWDConfig", "AWDLSTMEncoder", "LanguageModel", "TextClassifier",
    "BucketLoader", "LMLoader", "pad_sequences",
    "SPECIALS", "TextStats", "Tokenizer", "Vocab", "tokenize",
    "TransformerClassifier", "default_model_path", "encode_texts", "load_pretrained",
]
