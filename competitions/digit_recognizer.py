"""Digit Recognizer (Kaggle's MNIST): the digit in each 28x28 grey image, scored by accuracy.

``train.csv`` holds ``label, pixel0..pixel783``, ``test.csv`` the pixels alone; the submission's ImageId is the
test row's number. Recipes: two small VGG-style CNNs from scratch (``kitbox.recipes.vision.small_cnn``), one at
16-32-64 channels and one at 24-48-96 with more dropout: one-cycle, shifts / rotations / zooms as augmentation
(never flips: a mirrored 2 is not a 2), TTA with shifted views; the blend of the two beats either alone.
No pretrained weights are needed.
"""
from __future__ import annotations

from pathlib import Path

from kitbox.adapt.bases import ImageCompetition


class DigitRecognizer(ImageCompetition):
    slug = "digit-recognizer"
    aliases = ("digits",)
    title = "Digit Recognizer"
    metric_name = "accuracy"
    target = "label"
    pixel_prefix = "pixel"
    image_shape = (28, 28)  # every one of pixel0..pixel783 must be in train and test
    sample_dir = Path(__file__).resolve().parent / "samples" / "digit-recognizer"

    def recipes(self):
        from kitbox.recipes import vision

        return {"small_cnn": vision.small_cnn,
                "small_cnn_wide": vision.small_cnn.configure(widths="24,48,96", ps=0.4)}
