"""Real digits as tensors for the trainer's tests (and the DDP worker)."""
import numpy as np
import pandas as pd
import torch

from helpers.paths import SHARED_DATA


def load_digits(n_max=8000):
    """Digit Recognizer's real CSV when ../shared is here, scikit-learn's bundled 8x8 digits otherwise."""
    path = SHARED_DATA / "digit-recognizer" / "train.csv"
    if path.exists():
        df = pd.read_csv(path, nrows=n_max)
        x = df.drop(columns="label").to_numpy(np.float32) / 255.0
        y = df["label"].to_numpy()
    else:
        from sklearn.datasets import load_digits as sk_digits

        d = sk_digits()
        x, y = d.data.astype(np.float32) / 16.0, d.target
    return torch.tensor(x), torch.tensor(y)
