"""Everything that talks to Kaggle: finding a competition's files, download, submit and poll the score,
Kaggle-notebook paths, and an offline wheelhouse for code competitions.

The ``kaggle`` package is imported only when a call needs it (version 2.x authenticates at import and
prints help when there are no credentials). Every function takes an optional ``client`` so tests pass a
fake object with the same three methods.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

KAGGLE_INPUT = Path("/kaggle/input")
KAGGLE_WORKING = Path("/kaggle/working")
REPO_ROOT = Path(__file__).resolve().parents[2]


class KaggleError(RuntimeError):
    """A Kaggle call failed; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------- where we run


def in_kaggle_notebook(env=None) -> bool:
    return "KAGGLE_KERNEL_RUN_TYPE" in (os.environ if env is None else env)


def output_dir(env=None) -> Path:
    """Where outputs go: /kaggle/working inside a Kaggle notebook (the only saved folder), else the current folder."""
    return KAGGLE_WORKING if in_kaggle_notebook(env) else Path(".")


def _config_dirs(env) -> list[Path]:
    if env.get("KAGGLE_CONFIG_DIR"):
        return [Path(env["KAGGLE_CONFIG_DIR"])]
    home = Path(env.get("HOME") or Path.home())
    return [home / ".kaggle", Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"]


def credentials_source(env=None) -> str | None:
    """Which credentials the kaggle client would use, or None when there are none."""
    env = os.environ if env is None else env
    if env.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME + KAGGLE_KEY"
    for d in _config_dirs(env):
        for name in ("kaggle.json", "access_token"):
            if (d / name).is_file():
                return str(d / name)
    return None


NO_CREDENTIALS = (
    "no Kaggle credentials found. Create a token at https://www.kaggle.com/settings (API > Create New Token), then "
    "either save kaggle.json to ~/.kaggle/kaggle.json (chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY, "
    "or set KAGGLE_API_TOKEN."
)


def require_credentials(env=None) -> str:
    """Fail before any training when --submit will need credentials that are not there."""
    found = credentials_source(env)
    if found is None:
        raise KaggleError(f"--submit needs Kaggle credentials: {NO_CREDENTIALS} (checked before training, so nothing "
                          "was trained)")
    return found


def get_client(env=None):
    """An authenticated ``kaggle`` API object; raises KaggleError when there are no credentials."""
    if credentials_source(env) is None:
        raise KaggleError(NO_CREDENTIALS)
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError:
        raise KaggleError("the kaggle package is not installed: pip install kaggle") from None
    api = KaggleApi()
    try:
        api.authenticate()
    except (Exception, SystemExit) as e:  # the client exits the process on bad credentials
        raise KaggleError(f"Kaggle refused the credentials ({e}). {NO_CREDENTIALS}") from None
    return api


def _status_code(err) -> int | None:
    response = getattr(err, "response", None)
    code = getattr(response, "status_code", None) or getattr(err, "status", None)
    return int(code) if isinstance(code, int) else None


def explain(err: BaseException, slug: str) -> KaggleError:
    """One clear message, with the fix, for the ways a Kaggle call usually fails."""
    code = _status_code(err)
    text = str(err)
    if code == 403 or (code is None and "403" in text):
        return KaggleError(f"Kaggle answered 403 Forbidden for {slug}: you have not accepted the competition's rules. "
                           f"Open https://www.kaggle.com/competitions/{slug}/rules, click 'I Understand and Accept', retry.")
    if code == 401 or (code is None and "401" in text):
        return KaggleError(f"Kaggle answered 401 Unauthorized: the credentials are wrong or expired. {NO_CREDENTIALS}")
    if code == 404 or (code is None and "404" in text):
        return KaggleError(f"Kaggle answered 404 Not Found: is {slug!r} the competition's slug (the name in its URL)?")
    network_words = ("connection", "resolve", "timed out", "unreachable", "network", "max retries")
    if isinstance(err, (ConnectionError, TimeoutError)) or any(w in text.lower() for w in network_words):
        return KaggleError(f"cannot reach kaggle.com ({type(err).__name__}): no network. In a Kaggle notebook turn "
                           "Internet on in the settings panel, or attach the competition data and pass --data.")
    return KaggleError(f"Kaggle call for {slug} failed: {type(err).__name__}: {err}")


# ---------------------------------------------------------------------------------------------- data


def _has_files(path: Path) -> bool:
    return path.is_dir() and any(p.name[0] != "." for p in path.iterdir())


def local_data_dir(slug: str, data: str | os.PathLike | None = None, cwd: Path | None = None,
                   expected=(), log=print) -> Path | None:
    """The first existing folder of ``--data DIR``, ``./data/SLUG``, ``/kaggle/input/SLUG``; None when none exists.

    ``--data`` may name Kaggle's downloaded ``SLUG.zip`` (or a folder holding only zips): it is unzipped in place.
    """
    if data is not None:
        data = Path(data)
        if data.is_file() and data.suffix == ".zip":
            folder = data.with_suffix("")
            folder.mkdir(exist_ok=True)
            with zipfile.ZipFile(data) as zf:
                log(f"unzipping {data} into {folder}")
                zf.extractall(folder)
            data = folder
        if not data.is_dir():
            raise FileNotFoundError(f"--data {data}: no such folder")
        visible = [p for p in data.iterdir() if not p.name.startswith(".")]
        if not visible:
            wanted = ", ".join(expected) if expected else "the files of the competition's Data page"
            raise FileNotFoundError(f"--data {data} is empty: put the competition's files there ({wanted}); "
                                    f"`kaggle competitions download -c {slug}` fetches them as one zip")
        if all(p.suffix == ".zip" for p in visible if p.is_file()) and not any(p.is_dir() for p in visible):
            _unzip_all(data, log, delete=False)  # the user's own zip stays where they put it
        return data
    cwd = Path.cwd() if cwd is None else cwd
    for candidate in (cwd / "data" / slug, KAGGLE_INPUT / slug, KAGGLE_INPUT / "competitions" / slug):
        if _has_files(candidate):
            return candidate
    return None


def find_data(slug: str, data=None, sample_dir=None, download: bool = False, client=None, env=None,
              cwd: Path | None = None, log=print, expected=()) -> tuple[Path, bool]:
    """Find a competition's files: --data, ./data/SLUG, /kaggle/input/SLUG, a download when credentials
    exist (or ``download``), else the embedded sample. Returns ``(folder, is_sample)``."""
    cwd = Path.cwd() if cwd is None else cwd
    found = local_data_dir(slug, data, cwd, expected, log)
    if found is not None:
        if download:
            log(f"--download: {found} already holds {slug}'s files; delete that folder to download again")
        return found, False
    if download or client is not None or credentials_source(env) is not None:
        dest = cwd / "data" / slug
        try:
            return download_competition(slug, dest, client=client, env=env, log=log), False
        except KaggleError as e:
            if download or sample_dir is None:
                raise
            log(f"download failed: {e}")
    if sample_dir is not None and _has_files(Path(sample_dir)):
        log(f"Using the small embedded sample of {slug} in {sample_dir} (a demo, not the real competition). "
            f"For the full data: accept the rules at https://www.kaggle.com/competitions/{slug}/rules, set up Kaggle "
            f"credentials and rerun with --download, or put the files in ./data/{slug} or pass --data DIR.")
        return Path(sample_dir), True
    raise FileNotFoundError(f"no data for {slug}: put the competition's files in ./data/{slug}, pass --data DIR, "
                            "or set up Kaggle credentials and use --download")


def _unzip_all(folder: Path, log=print, delete: bool = True) -> None:
    """Extract every zip in ``folder`` (Kaggle zips the bundle, and some files inside it again); ``delete`` removes
    each archive once extracted."""
    done: set[Path] = set()
    for _ in range(2):  # the bundle, then zips that were inside it (e.g. train.zip of dogs-vs-cats)
        for archive in sorted(set(folder.glob("*.zip")) - done):
            log(f"unzipping {archive.name}")
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(folder)
            done.add(archive)
            if delete:
                archive.unlink()


def download_competition(slug: str, dest, client=None, env=None, log=print) -> Path:
    dest = Path(dest)
    client = client if client is not None else get_client(env)
    dest.mkdir(parents=True, exist_ok=True)
    log(f"downloading {slug} into {dest} ...")
    try:
        client.competition_download_files(slug, path=str(dest), quiet=False)
    except KaggleError:
        raise
    except (Exception, SystemExit) as e:
        raise explain(e, slug) from None
    _unzip_all(dest, log)
    if not _has_files(dest):
        raise KaggleError(f"the download of {slug} left {dest} empty")
    return dest


# ---------------------------------------------------------------------------------------------- submit


def _status(submission) -> str:
    status = getattr(submission, "status", "")
    return str(getattr(status, "name", status)).lower().split(".")[-1]


def submit(slug: str, csv_path, message: str, client=None, env=None, poll_seconds: float = 10.0,
           timeout: float = 600.0, sleep=time.sleep, log=print) -> str | None:
    """Upload a checked CSV, then poll until Kaggle scores it; returns the public score (None on timeout)."""
    csv_path = Path(csv_path)
    client = client if client is not None else get_client(env)
    try:
        client.competition_submit(str(csv_path), message, slug)
    except (Exception, SystemExit) as e:
        raise explain(e, slug) from None
    log(f"submitted {csv_path} to {slug}: {message!r}; waiting for the score ...")
    waited = 0.0
    while waited <= timeout:
        try:
            subs = client.competition_submissions(slug) or []
        except (Exception, SystemExit) as e:
            raise explain(e, slug) from None
        ours = [s for s in subs if getattr(s, "description", None) == message] or subs[:1]
        if ours:
            status = _status(ours[0])
            if status == "complete":
                score = getattr(ours[0], "public_score", None)
                log(f"public score: {score}")
                return score
            if status == "error":
                raise KaggleError(f"Kaggle could not score the submission: {getattr(ours[0], 'error_description', '')}")
        sleep(poll_seconds)
        waited += poll_seconds
    log(f"no score after {timeout:.0f} s; see https://www.kaggle.com/competitions/{slug}/submissions")
    return None


# ---------------------------------------------------------------------------------------------- offline install


def _dependencies() -> list[str]:
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        from importlib.metadata import requires

        return [r for r in requires("kitbox") or [] if "extra ==" not in r]
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


PREINSTALLED_ON_KAGGLE = {"torch", "torchvision", "numpy", "pandas", "scikit-learn", "matplotlib", "tqdm", "six",
                          "timm", "albumentations", "safetensors", "kaggle"}


def wheelhouse_commands(dest, all_deps: bool = False, python: str = sys.executable) -> list[list[str]]:
    """pip commands that gather kitbox and its dependencies as wheels (what Kaggle's image lacks, unless ``all_deps``)."""
    dest = str(dest)
    cmds = [[python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", dest, str(REPO_ROOT)]]
    deps = [d for d in _dependencies()
            if all_deps or d.split(">")[0].split("=")[0].split("<")[0].strip() not in PREINSTALLED_ON_KAGGLE]
    if deps:  # their own dependencies (numpy, scipy, scikit-learn...) are on Kaggle already unless all_deps
        cmds.append([python, "-m", "pip", "wheel", *([] if all_deps else ["--no-deps"]), "-w", dest, *deps])
    return cmds


def wheelhouse(dest, all_deps: bool = False, run=subprocess.run, log=print) -> Path:
    """Build the wheels into ``dest``; attach it to a notebook as a dataset and install offline with
    ``pip install --no-index --find-links /kaggle/input/<dataset> kitbox``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for cmd in wheelhouse_commands(dest, all_deps):
        log("$ " + " ".join(cmd))
        run(cmd, check=True)
    log(f"wheels in {dest}: {', '.join(sorted(p.name for p in dest.glob('*.whl')))}")
    log(f"offline install: pip install --no-index --find-links {dest} kitbox")
    return dest
