"""Segmentation: masks read from an RLE CSV or mask images, the cut and component size chosen on OOF, RLE
submissions checked per image, the scaffold recognising a segmentation folder, and a U-Net run end to end on the
embedded nuclei tiles (real Kaggle DSB 2018 data)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kitbox.adapt.bases import SegmentationCompetition
from kitbox.adapt.bases.segmentation import remove_small
from kitbox.adapt.scaffold import guess_competition
from kitbox.errors import InputError
from kitbox.io.rle import rle_decode, rle_encode
from kitbox.io.submission import SubmissionError, check_submission, submission_rules
from helpers.paths import REPO, SHARED

SAMPLE = REPO / "competitions" / "samples" / "nuclei-tiles"
WEIGHTS = SHARED / "weights"


class Nuclei(SegmentationCompetition):
    slug = "nuclei-tiles"


@pytest.fixture(scope="module")
def nuclei():
    comp = Nuclei()
    return comp, comp.load(SAMPLE)


def _copy_sample(tmp_path):
    data_dir = tmp_path / "nuclei"
    shutil.copytree(SAMPLE, data_dir, ignore=shutil.ignore_patterns("*.py", "solution.csv"))
    return data_dir


def test_masks_come_from_the_rle_csv_at_the_images_shape(nuclei):
    comp, data = nuclei
    table = pd.read_csv(SAMPLE / "train.csv")
    masks = comp.targets(data)
    assert masks.shape == (len(table), 64, 64) and data.extra["mask_shape"] == (64, 64)
    for i in (0, len(table) - 1):  # column-major, 1-indexed: the file's own text round-trips
        assert np.array_equal(masks[i], rle_decode(table["rle_mask"][i], (64, 64)))
        assert rle_encode(masks[i]) == table["rle_mask"][i]
    assert list(data.test["id"]) == list(pd.read_csv(SAMPLE / "sample_submission.csv")["id"])
    assert data.task == "segmentation"


def test_mask_images_give_the_same_masks_and_empty_ones_count(nuclei, tmp_path):
    comp, data = nuclei
    data_dir = _copy_sample(tmp_path)
    (data_dir / "train.csv").unlink()
    (data_dir / "train" / "masks").mkdir()
    masks = comp.targets(data).copy()
    masks[3] = 0  # one image with nothing in it
    for i, m in zip(data.train["id"], masks):
        Image.fromarray(m.astype(np.uint8) * 255).save(data_dir / "train" / "masks" / f"{i}.png")

    folder_comp = type("FromImages", (Nuclei,), {"rle_file": None})()
    folder_data = folder_comp.load(data_dir)
    order = [list(folder_data.train["id"]).index(i) for i in data.train["id"]]
    assert np.array_equal(folder_comp.targets(folder_data)[order], masks)
    assert "1 with no object" in " ".join(folder_data.notes)


def test_a_bad_rle_in_train_csv_names_the_id_and_the_run(tmp_path):
    data_dir = _copy_sample(tmp_path)
    table = pd.read_csv(data_dir / "train.csv")
    table.loc[2, "rle_mask"] = "4000 200"
    table.to_csv(data_dir / "train.csv", index=False)
    with pytest.raises(InputError, match=rf"id {table['id'][2]}.*runs past the image's 4096 pixels"):
        Nuclei().load(data_dir)


def test_a_test_id_without_an_image_is_named(tmp_path):
    data_dir = _copy_sample(tmp_path)
    victim = pd.read_csv(data_dir / "sample_submission.csv")["id"][0]
    (data_dir / "test" / "images" / f"{victim}.png").unlink()
    with pytest.raises(InputError, match=rf"1 test id\(s\) have no image in .*test/images.*{victim}"):
        Nuclei().load(data_dir)


def test_decide_picks_the_cut_and_drops_specks_the_truth_lacks():
    y = np.zeros((4, 20, 20), np.uint8)
    y[:, 5:15, 5:15] = 1
    p = np.where(y, 0.62, 0.1).astype(np.float32)  # the object at 0.62: any cut below it finds it whole
    p[:, 0, 0] = 0.9  # a one-pixel speck, surer than the object: no cut removes it, a component size does
    decided = Nuclei().decide(p, y)
    assert decided["cut"] < 0.62 and decided["min_size"] > 1
    masks = Nuclei().apply(p, decided)
    assert np.array_equal(masks, y.astype(bool))


def test_remove_small_keeps_components_of_the_size_and_more():
    m = np.zeros((10, 10), bool)
    m[0:3, 0:3] = True  # 9 pixels
    m[8, 8] = m[9, 9] = True  # 2 pixels, diagonal neighbours: one 8-connected component
    assert remove_small(m, 3).sum() == 9
    assert remove_small(m, 2).sum() == 11 and remove_small(m, 10).sum() == 0


def test_submission_rles_are_at_each_test_images_own_size_and_checked(tmp_path):
    small = type("Small", (Nuclei,), {"mask_shape": (32, 32)})()  # predicted at 32x32, submitted at 64x64
    data = small.load(_copy_sample(tmp_path))
    pred = np.zeros((len(data.test), 32, 32), bool)
    pred[0, 4:8, 10:20] = True
    table = small.submission(data, pred)
    assert list(table.columns) == ["id", "rle_mask"] and list(table["id"]) == list(data.sample_submission["id"])
    first = rle_decode(table["rle_mask"][0], (64, 64))
    assert first.sum() == 4 * 10 * 4 and first[8:16, 20:40].all()
    assert (table["rle_mask"][1:] == "").all()  # no mask: the empty string
    rules = submission_rules(small, data)
    check_submission(table, data.sample_path, **rules)
    table.loc[1, "rle_mask"] = "4090 10"  # past the last of 4096 pixels
    with pytest.raises(SubmissionError, match=r"row 1 .*runs past the image's 4096 pixels"):
        check_submission(table, data.sample_path, **rules)


def test_the_scaffold_recognises_rle_and_mask_folder_layouts(tmp_path):
    guess = guess_competition(SAMPLE)
    assert guess.base == "SegmentationCompetition" and guess.attrs == {}
    data_dir = _copy_sample(tmp_path)
    (data_dir / "train.csv").rename(data_dir / "masks.csv")
    (data_dir / "train" / "masks").mkdir()
    for i in pd.read_csv(data_dir / "masks.csv")["id"]:
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(data_dir / "train" / "masks" / f"{i}.png")
    assert guess_competition(data_dir).attrs == {"rle_file": "masks.csv"}
    (data_dir / "masks.csv").unlink()
    assert guess_competition(data_dir).attrs == {"rle_file": None}


def test_the_unet_encoder_holds_the_weights_file():
    import timm
    import torch

    from kitbox.vision.models import _ported_norm, locate_weights
    from kitbox.vision.segmentation import UNet

    if not WEIGHTS.is_dir():
        pytest.skip(f"needs {WEIGHTS} (ImageNet weights beside the repo); not present in this checkout")
    model = UNet("efficientnet_lite0", weights=WEIGHTS)
    found = locate_weights("efficientnet_lite0", WEIGHTS)
    overlay = dict(file=str(found.path), **_ported_norm("efficientnet_lite0", found.path))
    ref = timm.create_model("efficientnet_lite0", pretrained=True, pretrained_cfg_overlay=overlay)
    assert torch.equal(model.net.encoder.model.conv_stem.weight, ref.conv_stem.weight)
    assert model.mean.flatten().tolist() == [127.5] * 3  # the TF port's [-1, 1] scaling, on uint8 inputs
    assert model(torch.zeros(2, 3, 64, 64, dtype=torch.uint8)).shape == (2, 1, 64, 64)


def test_new_then_submit_runs_a_unet_and_writes_a_checked_rle_submission(tmp_path):
    """The user's path: --new writes the adapter, the same command runs it (twice: the same seed gives the same
    bytes), --check accepts what it wrote and rejects a broken RLE."""
    data_dir = _copy_sample(tmp_path)
    adapter, out = tmp_path / "my_seg.py", tmp_path / "sub.csv"

    def submit(*args):
        return subprocess.run([sys.executable, str(REPO / "submit.py"), *map(str, args)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)

    made = submit("--new", data_dir, "--metric", "dice")
    assert made.returncode == 0, made.stderr
    shutil.move(tmp_path / "nuclei.py", adapter)
    weights = ["--weights", WEIGHTS] if WEIGHTS.is_dir() else ["--from-scratch"]
    run = submit(adapter, "--data", data_dir, "--quick", "--folds", "2", "--out", out, "--run-dir", tmp_path / "runs",
                 *weights)
    assert run.returncode == 0, run.stderr[-3000:]
    sub = pd.read_csv(out, keep_default_na=False)
    assert list(sub["id"]) == list(pd.read_csv(data_dir / "sample_submission.csv")["id"])
    masks = np.stack([rle_decode(r, (64, 64)) for r in sub["rle_mask"]])
    assert masks.any(axis=(1, 2)).mean() > 0.5  # every tile holds nuclei; most predicted masks are not empty
    metrics = json.loads(next((tmp_path / "runs").rglob("metrics.json")).read_text())
    assert metrics["blend"]["score_honest"] > 0.3  # predicting nothing scores 0 on these tiles: it learned
    assert set(metrics["blend"]["decided"]) == {"cut", "min_size"}
    assert submit(adapter, "--data", data_dir, "--check", out).returncode == 0
    again = submit(adapter, "--data", data_dir, "--quick", "--folds", "2", "--out", tmp_path / "again.csv",
                   "--run-dir", tmp_path / "runs-again", *weights)
    assert again.returncode == 0 and (tmp_path / "again.csv").read_bytes() == out.read_bytes()  # same seed, same masks
    sub.loc[0, "rle_mask"] = "10 5 12 3"  # overlapping runs
    sub.to_csv(tmp_path / "bad.csv", index=False)
    bad = submit(adapter, "--data", data_dir, "--check", tmp_path / "bad.csv")
    assert bad.returncode == 1 and "starts before run 0 ends" in bad.stderr
