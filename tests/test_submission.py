"""The submission checker against a dozen malformed CSVs, and the atomic checked writer."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kitbox.io.submission import (SubmissionError, check_submission, find_sample_submission, rules_for_metric,
                               write_submission)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

PROB_SAMPLE = "id,label\n1,0.5\n2,0.5\n3,0.5\n4,0.5\n"  # dogs-vs-cats style: id, P(dog)
INT_SAMPLE = "ImageId,Label\n1,0\n2,0\n3,0\n"  # digit-recognizer style: whole-number labels

GOOD_PROB = "id,label\n1,0.1\n2,0.9\n3,0.25\n4,1\n"

MALFORMED = {
    # name: (sample, submission text, words the error must contain)
    "empty file": (PROB_SAMPLE, "", "is empty"),
    "header only": (PROB_SAMPLE, "id,label\n", "has 0 rows"),
    "short": (PROB_SAMPLE, "id,label\n1,0.1\n2,0.9\n3,0.2\n", "short by 1"),
    "extra rows": (PROB_SAMPLE, GOOD_PROB + "5,0.5\n", "too many by 1"),
    "wrong header": (PROB_SAMPLE, GOOD_PROB.replace("label", "Label", 1), "missing ['label'], unexpected ['Label']"),
    "extra column": (PROB_SAMPLE, "id,label,x\n1,0.1,1\n2,0.9,1\n3,0.2,1\n4,1,1\n", "unexpected ['x']"),
    "column order": (PROB_SAMPLE, "label,id\n0.1,1\n0.9,2\n0.2,3\n1,4\n", "order"),
    "duplicated id": (PROB_SAMPLE, "id,label\n1,0.1\n2,0.9\n2,0.2\n4,1\n", "id '2' appears more than once"),
    "unknown id": (PROB_SAMPLE, "id,label\n1,0.1\n2,0.9\n3,0.2\n9,1\n", "id '9' is not in the sample"),
    "NaN": (PROB_SAMPLE, "id,label\n1,0.1\n2,\n3,0.2\n4,1\n", "missing value '' at row 1 (id 2)"),
    "nan text": (PROB_SAMPLE, "id,label\n1,0.1\n2,0.9\n3,nan\n4,1\n", "missing value 'nan' at row 2 (id 3)"),
    "inf": (PROB_SAMPLE, "id,label\n1,0.1\n2,inf\n3,0.2\n4,1\n", "infinite value"),
    "wrong type": (PROB_SAMPLE, "id,label\n1,0.1\n2,dog\n3,0.2\n4,1\n", "must be numeric like the sample's, found 'dog'"),
    "out of range": (PROB_SAMPLE, "id,label\n1,0.1\n2,1.7\n3,0.2\n4,1\n", "must lie in [0.0, 1.0], found '1.7'"),
    "float for int": (INT_SAMPLE, "ImageId,Label\n1,3\n2,7.5\n3,1\n", "whole numbers"),
    "empty id": (INT_SAMPLE, "ImageId,Label\n1,3\n,7\n3,1\n", "row 1 has an empty ImageId"),
    "not a CSV": (INT_SAMPLE, 'ImageId,Label\n1,3\n"2,7\n3,1\n', "not a readable CSV"),
}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_checker_names_the_first_problem(tmp_path, case):
    sample_text, text, words = MALFORMED[case]
    sample = _write(tmp_path, "sample_submission.csv", sample_text)
    sub = _write(tmp_path, "sub.csv", text)
    with pytest.raises(SubmissionError) as err:
        metric = "accuracy" if sample_text == INT_SAMPLE else "log_loss"
        check_submission(sub, sample, name="sub.csv", **rules_for_metric(metric, sample))
    assert words in str(err.value)


def test_checker_accepts_a_good_file_in_any_row_order(tmp_path):
    sample = _write(tmp_path, "sample_submission.csv", PROB_SAMPLE)
    check_submission(_write(tmp_path, "a.csv", GOOD_PROB), sample, {"label": (0, 1)})
    check_submission(_write(tmp_path, "b.csv", "id,label\n4,1\n3,0.2\n1,0.1\n2,0.9\n"), sample)  # Kaggle matches by id
    check_submission(pd.DataFrame({"ImageId": [3, 1, 2], "Label": [1, 2, 3]}), pd.read_csv(pd.io.common.StringIO(INT_SAMPLE)))


def test_text_label_columns_accept_any_nonempty_text(tmp_path):
    sample = _write(tmp_path, "s.csv", "image_name,tags\nt0,primary\nt1,primary\n")
    check_submission(_write(tmp_path, "ok.csv", "image_name,tags\nt0,clear primary\nt1,haze\n"), sample)
    with pytest.raises(SubmissionError, match="missing value"):
        check_submission(_write(tmp_path, "bad.csv", "image_name,tags\nt0,clear\nt1,\n"), sample)


def test_missing_file_is_named(tmp_path):
    sample = _write(tmp_path, "sample_submission.csv", PROB_SAMPLE)
    with pytest.raises(SubmissionError, match="nope.csv does not exist"):
        check_submission(tmp_path / "nope.csv", sample, name=str(tmp_path / "nope.csv"))


def test_write_submission_checks_before_writing_and_keeps_the_old_file(tmp_path):
    sample = pd.DataFrame({"id": [1, 2, 3], "label": 0.5})
    out = tmp_path / "submission.csv"
    write_submission(pd.DataFrame({"id": [1, 2, 3], "label": [0.2, 0.4, 0.6]}), out, sample, {"label": (0, 1)})
    first = out.read_bytes()
    assert pd.read_csv(out)["label"].tolist() == [0.2, 0.4, 0.6]
    with pytest.raises(SubmissionError, match="NaN|missing value"):
        write_submission(pd.DataFrame({"id": [1, 2, 3], "label": [0.2, float("nan"), 0.6]}), out, sample)
    assert out.read_bytes() == first  # a failed check never touches the file
    assert [p.name for p in tmp_path.iterdir()] == ["submission.csv"]  # no temporary files left behind


def test_find_sample_submission(tmp_path):
    with pytest.raises(SubmissionError, match="no sample_submission.csv"):
        find_sample_submission(tmp_path)
    _write(tmp_path, "sample_submission.csv.gz", "")
    assert find_sample_submission(tmp_path).name == "sample_submission.csv.gz"


@pytest.mark.skipif(not (SHARED / "data" / "digit-recognizer").is_dir(), reason="needs ../shared/data/digit-recognizer")
def test_real_digit_recognizer_sample(tmp_path):
    sample_path = SHARED / "data" / "digit-recognizer" / "sample_submission.csv"
    sample = pd.read_csv(sample_path)
    good = sample.assign(Label=(sample["ImageId"] * 7) % 10).sample(frac=1.0, random_state=0)  # shuffled rows
    write_submission(good, tmp_path / "ok.csv", sample_path)
    check_submission(tmp_path / "ok.csv", sample_path)
    with pytest.raises(SubmissionError, match="short by 1"):
        check_submission(good.iloc[:-1], sample_path)
    with pytest.raises(SubmissionError, match="whole numbers"):
        check_submission(good.assign(Label=good["Label"] + 0.5), sample_path, **rules_for_metric("accuracy", sample_path))


def test_integer_placeholders_only_force_integers_for_label_metrics(tmp_path):
    sample = _write(tmp_path, "sample_submission.csv", "Id,Sales\n1,0\n2,0\n")  # Rossmann: 0 as placeholder
    sub = _write(tmp_path, "sub.csv", "Id,Sales\n1,5263.5\n2,0\n")
    check_submission(sub, sample, **rules_for_metric("rmspe", sample))
    with pytest.raises(SubmissionError, match="whole numbers"):
        check_submission(sub, sample, **rules_for_metric("accuracy", sample))
    assert rules_for_metric("log_loss", sample) == {"ranges": {"Sales": (0.0, 1.0)}}


def test_a_valid_but_constant_submission_is_flagged_and_a_varied_one_is_not(tmp_path):
    """One value on every row passes the check, yet usually means the ids did not match or the models learned
    nothing: the summary says so, and names the sample's placeholder when that is what was written."""
    from types import SimpleNamespace

    from kitbox.io.submission import degenerate_warnings

    sample = tmp_path / "sample_submission.csv"
    sample.write_text("id,target\n0001,0\n0002,0\n0003,0\n")
    data = SimpleNamespace(sample_path=sample)
    for text, expected in (("id,target\n0001,0\n0002,0\n0003,0\n", ["'0'", "placeholder"]),
                           ("id,target\n0001,1\n0002,1\n0003,1\n", ["'1'"]),
                           ("id,target\n0001,0\n0002,1\n0003,0\n", [])):
        sub = tmp_path / "sub.csv"
        sub.write_text(text)
        warnings = degenerate_warnings(sub, data, "f1", {})
        assert len(warnings) == (1 if expected else 0)
        assert all(word in warnings[0] for word in expected) if expected else True
        if expected and "placeholder" not in expected:
            assert "placeholder" not in warnings[0]
    assert any("ranks" in w for w in degenerate_warnings(sub, data, "auc", {}))
