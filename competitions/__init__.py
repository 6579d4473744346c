"""The built-in competitions: one recipe card per file, found by kitbox's registry from their source (``slug``,
``aliases``, ``metric_name``) without importing them, and their embedded samples in ``samples/``."""
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent / "samples"
