"""Rebuild this embedded sample from a full Dogs vs Cats Redux folder: ``python make_sample.py /path/to/dogs-vs-cats-redux-kernels-edition``.

Draws N_PER_CLASS cats and dogs from train/ and N_TEST test photos (seed 0), shrinks each so its shorter side is
SIDE pixels (JPEG quality 80), and writes the matching rows of sample_submission.csv.
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

N_PER_CLASS, N_TEST, SIDE, SEED = 100, 50, 128, 0


def shrink(src: Path, dst: Path) -> None:
    with Image.open(src) as image:
        image = image.convert("RGB")
        scale = SIDE / min(image.size)
        if scale < 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        image.save(dst, quality=80, optimize=True)


def main(source: Path, dest: Path) -> None:
    rng = np.random.default_rng(SEED)
    (dest / "train").mkdir(parents=True, exist_ok=True)
    (dest / "test").mkdir(parents=True, exist_ok=True)
    for label in ("cat", "dog"):
        files = sorted((source / "train").glob(f"{label}.*.jpg"))
        for f in rng.choice(files, N_PER_CLASS, replace=False):
            shrink(f, dest / "train" / f.name)
    tests = sorted((source / "test").glob("*.jpg"))
    chosen = sorted(rng.choice(tests, N_TEST, replace=False), key=lambda p: int(p.stem))
    for f in chosen:
        shrink(f, dest / "test" / f.name)
    sample = pd.read_csv(source / "sample_submission.csv")
    ids = {int(f.stem) for f in chosen}
    sample[sample["id"].isin(ids)].to_csv(dest / "sample_submission.csv", index=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).resolve().parent)
