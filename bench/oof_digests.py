"""Byte-level fingerprints of what a run predicts: fold 0 of every default recipe of every built-in competition, on
its embedded sample, in quick mode, seed 42. A refactor that claims "behaviour unchanged" runs this before and after:

    python bench/oof_digests.py --write bench/oof_digests.json     # before the change
    python bench/oof_digests.py --check bench/oof_digests.json     # after: every recipe's OOF and test bytes equal

The digests are of torch's CPU arithmetic on one machine (library versions and CPU as recorded in the file); another
CPU or library version may differ in the last bit without anything being wrong. Dogs vs Cats needs the ImageNet
weights in ../shared/weights (skipped without them)."""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

import kitbox

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO.parent / "shared" / "weights" / "efficientnet_lite0.in1k.safetensors"
COMPETITIONS = ["digits", "rossmann", "disaster-tweets", "dogs-vs-cats"]


def cpu() -> str:
    """The CPU's model and a digest of its instruction-set flags: float kernels (BLAS, oneDNN, LightGBM's
    histograms) pick their code path by these, so two machines that differ here may differ in the last bit."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = hashlib.sha256(" ".join(sorted(fields.get("flags", "").split())).encode()).hexdigest()[:12]
    return f"{fields.get('model name', platform.machine())} (flags {flags})"


def environment() -> dict:
    versions = {}
    for module in ("torch", "numpy", "pandas", "sklearn", "lightgbm", "timm"):
        try:
            versions[module] = importlib.import_module(module).__version__
        except ImportError:
            versions[module] = None
    return {**versions, "python": platform.python_version(), "machine": platform.machine(), "cpu": cpu()}


def digests(name: str, run_dir: Path) -> dict[str, str]:
    kwargs = {"weights": WEIGHTS} if name == "dogs-vs-cats" else {}
    if name == "dogs-vs-cats" and not WEIGHTS.exists():
        print(f"skipping {name}: needs {WEIGHTS}", file=sys.stderr)
        return {}
    torch.set_num_threads(1)
    kitbox.run(name, folds=[0], seed=42, quick=True, run_dir=run_dir, progress=False, log=lambda *_: None, **kwargs)
    out = {}
    for oof in sorted(run_dir.glob("*/*/fold0/oof.npy")):
        recipe = oof.parents[2].name
        for part in ("oof.npy", "test.npy"):
            path = oof.parent / part
            if path.exists():
                out[f"{name}/{recipe}/{part}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path)
    group.add_argument("--check", type=Path)
    parser.add_argument("--only", nargs="*", default=COMPETITIONS)
    args = parser.parse_args()
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            found.update(digests(name, Path(tmp) / name))
            print(f"{name}: done", file=sys.stderr)
    if args.write:
        args.write.write_text(json.dumps({"environment": environment(), "digests": found}, indent=1) + "\n")
        print(f"{len(found)} digests written to {args.write}")
        return 0
    recorded = json.loads(args.check.read_text())
    if recorded["environment"] != environment():
        print(f"note: recorded on {recorded['environment']}, checking on {environment()}")
    wanted = {k: v for k, v in recorded["digests"].items() if k.split("/")[0] in args.only}
    differ = sorted(k for k in wanted if found.get(k) != wanted[k])
    for key in differ:
        print(f"DIFFERS: {key}" + ("" if key in found else " (not produced)"))
    print(f"{len(wanted) - len(differ)} of {len(wanted)} recorded digests equal")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
