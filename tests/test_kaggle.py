"""The Kaggle boundary with a fake client: credentials, 403 / no network messages, download + unzip, submit + score,
data discovery order, Kaggle-notebook paths and the wheelhouse commands. Nothing here touches the network."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from kitbox.io import kaggle

SLUG = "digit-recognizer"


def http_error(code: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = code
    return requests.HTTPError(f"{code} Client Error for url: https://www.kaggle.com/api/v1/...", response=response)


class FakeClient:
    """The three methods of kaggle's KaggleApi that kitbox calls, backed by memory."""

    def __init__(self, fail=None, statuses=("PENDING", "COMPLETE"), score="0.98765"):
        self.fail, self.statuses, self.score = fail, list(statuses), score
        self.downloads, self.submitted = [], []

    def competition_download_files(self, competition, path=None, quiet=True):
        if self.fail:
            raise self.fail
        self.downloads.append((competition, path))
        inner = io.BytesIO()
        with zipfile.ZipFile(inner, "w") as zf:  # Kaggle zips some folders inside the bundle (dogs-vs-cats' train.zip)
            zf.writestr("train/cat.0.jpg", b"jpeg bytes")
        with zipfile.ZipFile(Path(path) / f"{competition}.zip", "w") as zf:
            zf.writestr("sample_submission.csv", "ImageId,Label\n1,0\n")
            zf.writestr("train.zip", inner.getvalue())

    def competition_submit(self, file_name, message, competition):
        if self.fail:
            raise self.fail
        self.submitted.append((file_name, message, competition))

    def competition_submissions(self, competition):
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        message = self.submitted[-1][1]
        return [SimpleNamespace(description=message, status=status, public_score=self.score,
                                error_description="Submission has 3 rows, expected 2")]


def test_credentials_are_found_in_each_documented_place(tmp_path):
    home = {"HOME": str(tmp_path)}
    assert kaggle.credentials_source(home) is None
    assert kaggle.credentials_source({**home, "KAGGLE_API_TOKEN": "KGAT_x"}) == "KAGGLE_API_TOKEN"
    assert kaggle.credentials_source({**home, "KAGGLE_USERNAME": "u"}) is None  # half a pair is not enough
    assert kaggle.credentials_source({**home, "KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"}) == "KAGGLE_USERNAME + KAGGLE_KEY"
    (tmp_path / ".kaggle").mkdir()
    (tmp_path / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "u", "key": "k"}))
    assert kaggle.credentials_source(home).endswith(".kaggle/kaggle.json")
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "access_token").write_text("KGAT_x")
    assert kaggle.credentials_source({**home, "KAGGLE_CONFIG_DIR": str(conf)}).endswith("conf/access_token")


def test_no_credentials_gives_the_fix_without_importing_the_client(tmp_path):
    code = ("import sys; from kitbox.io import kaggle\n"
            "try:\n    kaggle.get_client({'HOME': sys.argv[1]})\n"
            "except kaggle.KaggleError as e:\n    print(e)\n"
            "print('kaggle imported:', 'kaggle.api' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert "no Kaggle credentials found" in out and "KAGGLE_USERNAME" in out and "kaggle.json" in out
    assert "kaggle imported: False" in out


@pytest.mark.parametrize("error,words", [
    (http_error(403), "rules"),
    (http_error(401), "credentials are wrong or expired"),
    (http_error(404), "slug"),
    (requests.ConnectionError("Max retries exceeded: Failed to resolve 'www.kaggle.com'"), "no network"),
    (OSError("[Errno 101] Network is unreachable"), "no network"),
])
def test_download_failures_get_one_clear_message(tmp_path, error, words):
    with pytest.raises(kaggle.KaggleError, match=words) as err:
        kaggle.download_competition(SLUG, tmp_path / "data", client=FakeClient(fail=error), log=lambda *_: None)
    if words == "rules":
        assert f"https://www.kaggle.com/competitions/{SLUG}/rules" in str(err.value)


def test_download_unzips_the_bundle_and_the_zips_inside_it(tmp_path):
    client = FakeClient()
    dest = kaggle.download_competition(SLUG, tmp_path / "data" / SLUG, client=client, log=lambda *_: None)
    assert (dest / "sample_submission.csv").exists() and (dest / "train" / "cat.0.jpg").read_bytes() == b"jpeg bytes"
    assert not list(dest.glob("*.zip"))
    assert client.downloads == [(SLUG, str(dest))]


def test_submit_polls_until_scored(tmp_path):
    csv = tmp_path / "submission.csv"
    csv.write_text("ImageId,Label\n1,0\n")
    client, naps = FakeClient(statuses=["PENDING", "PENDING", "SubmissionStatus.COMPLETE"]), []
    score = kaggle.submit(SLUG, csv, "kitbox test", client=client, sleep=naps.append, log=lambda *_: None)
    assert score == "0.98765" and len(naps) == 2
    assert client.submitted == [(str(csv), "kitbox test", SLUG)]


def test_submit_reports_scoring_errors_403_and_timeouts(tmp_path):
    csv = tmp_path / "submission.csv"
    csv.write_text("ImageId,Label\n1,0\n")
    quiet = dict(sleep=lambda s: None, log=lambda *_: None)
    with pytest.raises(kaggle.KaggleError, match="could not score.*3 rows"):
        kaggle.submit(SLUG, csv, "m", client=FakeClient(statuses=["ERROR"]), **quiet)
    with pytest.raises(kaggle.KaggleError, match="rules"):
        kaggle.submit(SLUG, csv, "m", client=FakeClient(fail=http_error(403)), **quiet)
    assert kaggle.submit(SLUG, csv, "m", client=FakeClient(statuses=["PENDING"]), timeout=30, **quiet) is None


def test_data_is_found_in_the_documented_order(tmp_path, monkeypatch):
    sample = tmp_path / "samples" / SLUG
    sample.mkdir(parents=True)
    (sample / "sample_submission.csv").write_text("ImageId,Label\n1,0\n")
    monkeypatch.setattr(kaggle, "KAGGLE_INPUT", tmp_path / "kaggle-input")
    no_creds = {"HOME": str(tmp_path)}
    messages = []
    found = kaggle.find_data(SLUG, sample_dir=sample, env=no_creds, cwd=tmp_path, log=messages.append)
    assert found == (sample, True) and "embedded sample" in messages[0] and "--download" in messages[0]

    kaggle_input = tmp_path / "kaggle-input" / SLUG
    kaggle_input.mkdir(parents=True)
    (kaggle_input / "train.csv").write_text("label\n1\n")
    assert kaggle.find_data(SLUG, sample_dir=sample, env=no_creds, cwd=tmp_path) == (kaggle_input, False)

    local = tmp_path / "data" / SLUG
    local.mkdir(parents=True)
    (local / "train.csv").write_text("label\n1\n")
    assert kaggle.find_data(SLUG, sample_dir=sample, env=no_creds, cwd=tmp_path) == (local, False)
    assert kaggle.find_data(SLUG, data=sample, env=no_creds, cwd=tmp_path) == (sample, False)  # --data wins
    with pytest.raises(FileNotFoundError, match="--data"):
        kaggle.find_data(SLUG, data=tmp_path / "missing", env=no_creds, cwd=tmp_path)


def test_credentials_download_before_the_sample_and_fall_back_when_it_fails(tmp_path):
    sample = tmp_path / "sample"
    sample.mkdir()
    (sample / "sample_submission.csv").write_text("ImageId,Label\n1,0\n")
    found = kaggle.find_data(SLUG, sample_dir=sample, client=FakeClient(), cwd=tmp_path, log=lambda *_: None)
    assert found == (tmp_path / "data" / SLUG, False)
    messages = []
    found = kaggle.find_data("other-comp", sample_dir=sample, client=FakeClient(fail=http_error(403)), cwd=tmp_path,
                             log=messages.append)
    assert found == (sample, True) and any("rules" in m for m in messages)
    with pytest.raises(kaggle.KaggleError, match="no network"):  # an explicit --download does not fall back
        kaggle.find_data("other-comp", sample_dir=sample, download=True, cwd=tmp_path, log=lambda *_: None,
                         client=FakeClient(fail=requests.ConnectionError("connection refused")))


def test_kaggle_notebook_detection_and_output_dir():
    assert kaggle.in_kaggle_notebook({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"})
    assert kaggle.output_dir({"KAGGLE_KERNEL_RUN_TYPE": "Batch"}) == Path("/kaggle/working")
    assert not kaggle.in_kaggle_notebook({}) and kaggle.output_dir({}) == Path(".")


def test_wheelhouse_builds_kitbox_and_the_missing_dependencies(tmp_path):
    ran = []
    kaggle.wheelhouse(tmp_path / "wh", run=lambda cmd, check: ran.append(cmd), log=lambda *_: None)
    assert ran[0][-1] == str(kaggle.REPO_ROOT) and "--no-deps" in ran[0]
    assert any(d.startswith("iterative-stratification") for d in ran[1]) and not any(d.startswith("torch") for d in ran[1])
    everything = kaggle.wheelhouse_commands(tmp_path, all_deps=True)[1]
    assert any(d.startswith("torch") for d in everything)


def test_wheelhouse_really_builds_the_kitbox_wheel_offline(tmp_path):
    cmd = kaggle.wheelhouse_commands(tmp_path)[0]
    subprocess.run(cmd[:4] + ["--no-index", "-q"] + cmd[4:], check=True, capture_output=True, timeout=300)
    assert [p.name.split("-")[0] for p in tmp_path.glob("*.whl")] == ["kitbox"]


def test_download_keeps_data_already_there(tmp_path):
    local = tmp_path / "data" / SLUG
    local.mkdir(parents=True)
    (local / "train.csv").write_text("label\n1\n")
    client, messages = FakeClient(), []
    assert kaggle.find_data(SLUG, download=True, client=client, cwd=tmp_path, log=messages.append) == (local, False)
    assert client.downloads == [] and "delete that folder" in messages[0]
