"""Segmentation with several classes: Severstal's layout (a class column, only the masks that are there), Clouds'
(keys "ID_CLASS"), and mask images holding a value per class give the same (images, classes, H, W) masks; the
cut and smallest component are chosen per class; Dice is the mean over (image, class) pairs; the submission has
the sample's rows and is checked. The data: the embedded DSB 2018 nuclei tiles, each nucleus (a connected
component of the real mask) labelled "1" (small, under 235 pixels: the median) or "2" (large)."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

import kitbox
from helpers.paths import REPO, SHARED
from kitbox.adapt.bases import SegmentationCompetition
from kitbox.errors import InputError
from kitbox.io.rle import rle_decode, rle_encode
from kitbox.io.submission import SubmissionError, check_submission, submission_rules
from kitbox.metrics import dice

SAMPLE = REPO / "competitions" / "samples" / "nuclei-tiles"
WEIGHTS = SHARED / "weights"
MEDIAN = 235  # pixels: the median nucleus of the training tiles


def by_size(mask: np.ndarray) -> np.ndarray:
    """(2, H, W): the small nuclei, then the large ones."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    large = (sizes >= MEDIAN) & (np.arange(n + 1) > 0)
    return np.stack([(labels > 0) & ~large[labels], large[labels]]).astype(np.uint8)


def truth(file: str) -> dict[str, np.ndarray]:
    table = pd.read_csv(SAMPLE / file, keep_default_na=False)
    return {i: by_size(rle_decode(r, (64, 64))) for i, r in zip(table["id"], table["rle_mask"])}


class Severstal(SegmentationCompetition):
    slug = "nuclei-classes"
    class_col = "ClassId"


class Clouds(SegmentationCompetition):
    slug = "nuclei-classes"
    key_sep = "_"


class Values(SegmentationCompetition):
    slug = "nuclei-classes"
    class_col = "ClassId"
    rle_file = None
    mask_values = {"1": 1, "2": 2}


def layout(tmp_path, kind: str):
    """The tiles in one of the three layouts."""
    folder = tmp_path / kind
    shutil.copytree(SAMPLE / "train" / "images", folder / "train" / "images")
    shutil.copytree(SAMPLE / "test" / "images", folder / "test" / "images")
    train, test = truth("train.csv"), truth("solution.csv")
    if kind == "key":
        rows = [(f"{i}_{c + 1}", rle_encode(m[c])) for i, m in train.items() for c in range(2)]
        pd.DataFrame(rows, columns=["Image_Label", "EncodedPixels"]).to_csv(folder / "train.csv", index=False)
        pd.DataFrame({"Image_Label": [f"{i}_{c}" for i in test for c in ("1", "2")],
                      "EncodedPixels": "1 1"}).to_csv(folder / "sample_submission.csv", index=False)
        return folder
    if kind == "long":  # only the masks that are there, as Severstal's train.csv
        rows = [(i, str(c + 1), rle_encode(m[c])) for i, m in train.items() for c in range(2) if m[c].any()]
        pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"]).to_csv(folder / "train.csv", index=False)
    else:
        (folder / "train" / "masks").mkdir()
        for i, m in train.items():
            Image.fromarray((m[0] + 2 * m[1]).astype(np.uint8)).save(folder / "train" / "masks" / f"{i}.png")
    pd.DataFrame({"ImageId": [i for i in test for _ in range(2)], "EncodedPixels": "1 1",
                  "ClassId": ["1", "2"] * len(test)}).to_csv(folder / "sample_submission.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def severstal(tmp_path_factory):
    comp = Severstal()
    return comp, comp.load(layout(tmp_path_factory.mktemp("seg"), "long"))


def test_three_layouts_give_the_same_masks_per_class(severstal, tmp_path):
    comp, data = severstal
    expected = truth("train.csv")
    masks = comp.targets(data)
    assert masks.shape == (48, 2, 64, 64) and data.classes == ["1", "2"]
    for i, m in zip(data.train["ImageId"], masks):
        assert np.array_equal(m, expected[i])
    assert not (masks[:, 0] & masks[:, 1]).any() and (masks[:, 0] | masks[:, 1]).any(axis=(1, 2)).all()
    assert "images with each class: 1 " in " ".join(data.notes)
    for other, kind in ((Clouds(), "key"), (Values(), "values")):
        loaded = other.load(layout(tmp_path, kind))
        ids = loaded.train[loaded.columns.id]
        assert np.array_equal(np.stack([expected[i] for i in ids]), other.targets(loaded)), kind


def test_dice_is_the_mean_over_image_class_pairs():
    y = np.zeros((2, 2, 2, 2), bool)
    y[0, 0, 0, 0] = y[0, 0, 0, 1] = True  # image 0, class 0: two pixels; image 1 has nothing of either class
    p = y.copy()
    p[0, 0, 0, 1] = False  # one of the two found: Dice 2*1/(2+1)
    p[1, 1, 1, 1] = True  # a pixel of class 1 where there is none: 0
    # pairs: (0,0) 2/3, (0,1) both empty 1, (1,0) both empty 1, (1,1) 0
    assert dice(y, p) == pytest.approx((2 / 3 + 1 + 1 + 0) / 4)


def test_the_cut_and_smallest_component_are_chosen_per_class(severstal):
    comp, data = severstal
    y = comp.targets(data).astype(bool)
    oof = np.zeros(y.shape, np.float32)
    oof[:, 0] = np.where(y[:, 0], 0.3, 0.1)  # class 1 is found only by a low cut
    oof[:, 1] = np.where(y[:, 1], 0.9, 0.72)  # class 2 only by a high one
    decided = comp.decide(oof, y)
    assert 0.1 < decided["cut"][0] < 0.3 and 0.72 < decided["cut"][1] < 0.9
    assert np.array_equal(comp.apply(oof, decided), y) and dice(y, comp.apply(oof, decided)) == 1.0


def test_the_submission_has_the_samples_rows_each_checked(severstal, tmp_path):
    comp, data = severstal
    solution = truth("solution.csv")
    pred = np.stack([solution[i] for i in data.test["ImageId"]]).astype(bool)
    table = comp.submission(data, pred)
    assert list(table.columns) == list(data.sample_submission.columns)
    assert list(table["ImageId"]) == list(data.sample_submission["ImageId"])
    for image, cls, rle in zip(table["ImageId"], table["ClassId"], table["EncodedPixels"]):
        assert np.array_equal(rle_decode(rle, (64, 64)), solution[image][int(cls) - 1])
    path = tmp_path / "sub.csv"
    table.to_csv(path, index=False)
    rules = submission_rules(comp, data)
    check_submission(path, data.sample_path, **rules)
    table.loc[3, "EncodedPixels"] = "4000 200"
    table.to_csv(path, index=False)
    with pytest.raises(SubmissionError, match=r"row 3 \(ImageId .*runs past the image's 4096 pixels"):
        check_submission(path, data.sample_path, **rules)


def test_a_class_the_sample_lacks_is_named(tmp_path):
    folder = layout(tmp_path, "long")
    table = pd.read_csv(folder / "train.csv")
    table.loc[0, "ClassId"] = 3
    table.to_csv(folder / "train.csv", index=False)
    with pytest.raises(InputError, match=r"has class '3', which the sample submission does not have "
                                         r"\(its classes: \['1', '2'\]\)"):
        Severstal().load(folder)


@pytest.mark.skipif(not (WEIGHTS / "efficientnet_lite0.in1k.safetensors").exists(), reason="needs ../shared/weights")
def test_a_unet_with_a_sigmoid_per_class_runs_end_to_end(tmp_path):
    folder = layout(tmp_path, "long")
    report = kitbox.run(Severstal(), data=folder, quick=True, folds=2, weights=WEIGHTS, run_dir=tmp_path / "runs",
                        out=tmp_path / "sub.csv", progress=False, log=lambda *_: None)
    sub = pd.read_csv(report.submission, keep_default_na=False)
    assert len(sub) == 32 and set(sub["ClassId"].astype(str)) == {"1", "2"}
    assert len(report.blend["decided"]["cut"]) == len(report.blend["decided"]["min_size"]) == 2
    assert 0.0 <= report.blend["score_honest"] <= 1.0


def test_the_scaffold_recognises_a_class_column_and_joined_keys(tmp_path):
    from kitbox.adapt.scaffold import guess_competition

    long = guess_competition(layout(tmp_path, "long"))
    assert long.base == "SegmentationCompetition" and long.attrs == {"class_col": "ClassId"}
    key = guess_competition(layout(tmp_path, "key"))
    assert key.base == "SegmentationCompetition" and key.attrs == {"key_sep": "_"}
    assert guess_competition(SAMPLE).attrs == {}  # one mask per image: ids like "t01" are not keys
