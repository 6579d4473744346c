"""Dogs vs. Cats Redux (Kaggle): P(dog) for each test photo, scored by log loss.

Photos named ``train/cat.N.jpg`` / ``train/dog.N.jpg``, test photos ``test/N.jpg``. Recipes: a linear probe on
frozen efficientnet_lite0 features (plain + mirrored) and the same CNN's head trained on cached features (fastai's
``precompute=True``); ``--set ft_sizes=128,224`` adds the unfrozen phase with differential LRs and progressive
resizing. Both are calibrated for log loss on training rows only (``kitbox.recipes.vision``).
Pretrained weights: ``--weights PATH`` / ``$KITBOX_WEIGHTS`` / a dataset under /kaggle/input, or
``--download-weights``; ``--from-scratch`` trains from random weights (``cnn_from_scratch``).
"""
from __future__ import annotations

from pathlib import Path

from kitbox.adapt.bases import ImageCompetition


class DogsVsCats(ImageCompetition):
    slug = "dogs-vs-cats-redux-kernels-edition"
    aliases = ("dogs-vs-cats",)
    title = "Dogs vs. Cats Redux: Kernels Edition"
    metric_name = "log_loss"
    label_pattern = r"^(cat|dog)\."  # the label is in the file name
    positive_class = "dog"  # the submission's label column is P(dog)
    sample_dir = Path(__file__).resolve().parent / "samples" / "dogs-vs-cats-redux-kernels-edition"
