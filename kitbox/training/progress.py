"""What a fit reports: a progress bar and a line per epoch on the console; the history (JSON, CSV) and plots (PNG: the
LR range test, the schedule and losses of a fit) in its run folder."""
from __future__ import annotations

import json
from pathlib import Path

from kitbox.training.lr_finder import LRFinderResult
from kitbox.io.runs import private_tmp


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files, not windows: works on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def plot_lr_find(result: LRFinderResult, path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.losses)
    for name, lr, color in (("valley", result.valley, "C1"), ("steep", result.steep, "C2"), ("min/10", result.minimum, "C3")):
        ax.axvline(lr, color=color, linestyle="--", label=f"{name} {lr:.1e}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="loss (smoothed)", title="LR range test")
    ax.legend()
    return _save_fig(fig, path)


def plot_training(recorder: dict[str, list[float]], history: list[dict], path) -> Path:
    """One PNG with the per-batch LR and momentum (``recorder``) and the train/valid losses per epoch (``history``)."""
    plt = _pyplot()
    fig, (ax_lr, ax_mom, ax_loss) = plt.subplots(1, 3, figsize=(13, 3.5))
    ax_lr.plot(recorder["lr"])
    ax_lr.set(title="learning rate (last group)", xlabel="batch")
    ax_mom.plot(recorder["mom"])
    ax_mom.set(title="momentum (beta1)", xlabel="batch")
    epochs = [h["epoch"] for h in history]
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    if history and "valid_loss" in history[0]:
        ax_loss.plot(epochs, [h["valid_loss"] for h in history], "o-", label="valid")
    ax_loss.set(title="loss", xlabel="epoch")
    ax_loss.legend()
    return _save_fig(fig, path)


def _save_fig(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = private_tmp(path)
    fig.savefig(tmp, dpi=100)
    _pyplot().close(fig)
    tmp.replace(path)
    return path


def write_history(recorder: dict[str, list[float]], history: list[dict], run_dir: Path) -> None:
    """history.json, history.csv (one row per epoch) and training.png, each written atomically."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = private_tmp(run_dir / "history.json")
    tmp.write_text(json.dumps(history, indent=1))
    tmp.replace(run_dir / "history.json")
    columns = list(dict.fromkeys(k for record in history for k in record))
    lines = [",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns) for r in history]
    tmp = private_tmp(run_dir / "history.csv")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(run_dir / "history.csv")
    plot_training(recorder, history, run_dir / "training.png")


class Progress:
    """A tqdm bar per pass (with the smoothed loss and the LR) and one line per epoch; silent when not ``enabled``."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar, self.smooth = enabled, None, None

    def start(self, total: int, desc: str) -> None:
        if self.enabled:
            import sys

            from tqdm.auto import tqdm  # notebook-aware bar with ETA

            # a terminal or a notebook redraws the bar in place; a log file (nohup, CI) gets a line a minute
            live = sys.stderr.isatty() or "ipykernel" in sys.modules
            self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.1 if live else 60)
            self.smooth = None

    def advance(self, losses: list[float], lr: float | None = None) -> None:
        if self.bar is None:
            return
        if losses:
            self.smooth = losses[-1] if self.smooth is None else 0.9 * self.smooth + 0.1 * losses[-1]
            self.bar.set_postfix(loss=f"{self.smooth:.4f}", **({} if lr is None else {"lr": f"{lr:.1e}"}), refresh=False)
        self.bar.update(max(len(losses), 1))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def write(self, line: str) -> None:
        if self.enabled:
            from tqdm.auto import tqdm

            tqdm.write(line)

    def epoch(self, record: dict) -> None:
        parts = [f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items() if k != "data_time"]
        share = record["data_time"] / max(record["time"], 1e-9)
        self.write("  ".join(parts) + f"  (data {share:.0%} of time)")
