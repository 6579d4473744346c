"""Rebuild this embedded sample from a full Digit Recognizer folder: ``python make_sample.py /path/to/digit-recognizer``.

Keeps N_TRAIN random rows of train.csv and the first N_TEST rows of test.csv (seed 0), gzip-compressed; the test
rows keep their order, so ImageId (the 1-based row number) matches sample_submission.csv's first N_TEST rows.
"""
import sys
from pathlib import Path

import pandas as pd

N_TRAIN, N_TEST, SEED = 500, 100, 0


def main(source: Path, dest: Path) -> None:
    train = pd.read_csv(source / "train.csv").sample(N_TRAIN, random_state=SEED).sort_index()
    train.to_csv(dest / "train.csv.gz", index=False)
    pd.read_csv(source / "test.csv").head(N_TEST).to_csv(dest / "test.csv.gz", index=False)
    pd.read_csv(source / "sample_submission.csv").head(N_TEST).to_csv(dest / "sample_submission.csv", index=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).resolve().parent)
