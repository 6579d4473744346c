"""Run-length encoded masks (Kaggle's segmentation submissions) and the mask metrics, on hand-worked examples."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from kitbox.io.rle import RLEError, rle_decode, rle_encode, rle_runs
from kitbox.io.submission import SubmissionError, check_submission
from kitbox.metrics import dice, iou

# 3 rows x 4 columns; column-major numbering (top to bottom, then left to right) is Kaggle's usual:
#   1  4  7 10
#   2  5  8 11
#   3  6  9 12
MASK = np.array([[1, 1, 0, 0],
                 [1, 0, 0, 1],
                 [0, 0, 0, 1]], dtype=bool)


def test_encode_numbers_pixels_down_each_column_from_one():
    assert rle_encode(MASK) == "1 2 4 1 11 2"  # pixels 1-2, 4, 11-12
    assert rle_encode(MASK, order="C") == "1 2 5 1 8 1 12 1"  # row by row (Carvana): 1-2, 5, 8, 12


def test_encode_then_decode_gives_the_mask_back_in_either_order():
    for order in ("F", "C"):
        assert (rle_decode(rle_encode(MASK, order), MASK.shape, order) == MASK).all()
    full = np.ones((5, 7), bool)
    assert rle_encode(full) == "1 35" and rle_decode("1 35", full.shape).all()  # a run to the very last pixel


def test_an_empty_mask_is_the_empty_string_and_back():
    assert rle_encode(np.zeros((4, 4))) == ""
    for empty in ("", "  ", None, float("nan")):
        assert not rle_decode(empty, (4, 4)).any()


@pytest.mark.parametrize("text, problem", [
    ("1 2 4", "pairs of start and length"),
    ("0 2", "starts below 1"),
    ("3 0", "length below 1"),
    ("11 3", "past the image's 12 pixels"),
    ("4 2 1 2", "starts before run 0 ends"),
    ("1 3 3 1", "starts before run 0 ends"),
    ("1 x", "not a whole number"),
])
def test_a_bad_rle_is_an_error_naming_its_problem(text, problem):
    with pytest.raises(RLEError, match=problem):
        rle_runs(text, 12)


def test_dice_and_iou_on_worked_examples():
    truth = np.zeros((3, 2, 2), bool)
    pred = np.zeros((3, 2, 2), bool)
    truth[0, 0, :] = True  # image 0: truth 2 pixels, prediction 1 of them and 1 more
    pred[0, 0, 0] = pred[0, 1, 1] = True
    truth[1, 1, 1] = True  # image 1: truth 1 pixel, nothing predicted
    # image 2: both empty -> 1 (Kaggle's convention)
    assert dice(truth, pred) == pytest.approx((2 * 1 / 4 + 0 + 1) / 3)
    assert iou(truth, pred) == pytest.approx((1 / 3 + 0 + 1) / 3)
    assert dice(truth, pred.astype(np.float32) * 0.9) == dice(truth, pred)  # probabilities cut at 0.5
    with pytest.raises(ValueError, match="shape"):
        dice(truth, pred[:2])


def _csv(rows) -> io.StringIO:
    return io.StringIO(pd.DataFrame(rows, columns=["id", "rle_mask"]).to_csv(index=False))


def test_the_checker_decodes_every_rle_and_names_the_bad_one():
    sample = pd.DataFrame({"id": ["a", "b"], "rle_mask": ["1 1", "1 1"]})
    check_submission(_csv([["a", "1 2 4 1"], ["b", ""]]), sample, rle={"rle_mask": 12})  # an empty mask is fine
    with pytest.raises(SubmissionError, match=r"row 1 \(id b\).*past the image's 12 pixels"):
        check_submission(_csv([["a", "1 2"], ["b", "10 5"]]), sample, rle={"rle_mask": 12})
    with pytest.raises(SubmissionError, match="no image size known for id b"):
        check_submission(_csv([["a", "1 2"], ["b", "1 1"]]), sample, rle={"rle_mask": {"a": 12}})
