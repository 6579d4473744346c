"""Digit Recognizer (Kaggle's MNIST): the digit in each 28x28 grey image, scored by accuracy.

``train.csv`` holds ``label, pixel0..pixel783``, ``test.csv`` the pixels alone; the submission's ImageId is the
test row's number. Recipe: a small VGG-style CNN from scratch (``kitbox.recipes.vision.small_cnn``): one-cycle,
shifts / rotations / zooms as augmentation (never flips: a mirrored 2 is not a 2), TTA with shifted views.
No pretrained weights are needed.
"""
from __future__ import annotations

from pathlib import Path

from kitbox.bases import ImageCompetition
from kitbox.competition import CompetitionData
from kitbox.errors import InputError

SIDE = 28


class DigitRecognizer(ImageCompetition):
    slug = "digit-recognizer"
    aliases = ("digits",)
    title = "Digit Recognizer"
    metric_name = "accuracy"
    target = "label"
    pixel_prefix = "pixel"
    image_shape = (SIDE, SIDE)
    sample_dir = Path(__file__).resolve().parent / "samples" / "digit-recognizer"

    def attach_images(self, data: CompetitionData) -> None:
        """Every one of pixel0..pixel783 must be in train and test: a missing one fails here, named."""
        wanted = [f"{self.pixel_prefix}{i}" for i in range(SIDE * SIDE)]
        for file, table in ((self.train_file, data.train), (self.test_file, data.test)):
            missing = [c for c in wanted if c not in table.columns]
            if missing:
                more = " and more" if len(missing) > 5 else ""
                raise InputError(f"{data.data_dir / file} has no pixel column(s) {missing[:5]}{more}: a digit is "
                                 f"{SIDE}x{SIDE} = {SIDE * SIDE} columns pixel0..pixel{SIDE * SIDE - 1}; is it Digit "
                                 "Recognizer's file?")
        super().attach_images(data)

    def recipes(self):
        from kitbox.recipes import vision

        return {"small_cnn": vision.small_cnn}
