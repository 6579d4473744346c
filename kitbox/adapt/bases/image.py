"""Images in class folders, named files, a CSV beside a folder, or pixel columns: ``ImageCompetition``."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from kitbox.adapt.bases.table import TableCompetition, find_file, read_table
from kitbox.adapt.contract import CompetitionData
from kitbox.errors import InputError


class ImageCompetition(TableCompetition):
    """Images: class folders (``train/cat/*.jpg``), labels in file names (``cat.1.jpg``), a CSV of ids and labels
    beside an image folder, or pixel columns in the CSV (Digit Recognizer). Default recipes: a linear head on
    frozen pretrained features (the cheap baseline) and a pretrained timm CNN with TTA."""

    train_dir: str = "train"  # the training images (class sub-folders, or files)
    test_dir: str = "test"  # the test images; ids are file names without their suffix
    label_pattern: str | None = None  # a regex on file names whose first group is the label, e.g. r"^(cat|dog)\."
    image_col: str | None = None  # CSV layout: the column naming each image (default: the id column)
    image_suffix: str = ""  # CSV layout: appended to the id to name the file, e.g. ".jpg"
    pixel_prefix: str | None = None  # pixel layout: columns pixel0..pixelN
    image_shape: tuple[int, int] | None = None  # pixel layout: (height, width); default: a square

    def layout(self, data_dir: Path) -> str:
        if self.pixel_prefix:
            return "pixels"
        if self.label_pattern:
            return "filenames"
        if find_file(data_dir, self.train_file) is not None:
            return "csv"
        folder = data_dir / self.train_dir
        if folder.is_dir() and any(p.is_dir() for p in folder.iterdir()):
            return "folders"
        raise InputError(f"cannot tell how {data_dir} holds its images: no {self.train_file}, and {folder} has no class "
                         "sub-folders. Set label_pattern (labels in file names), pixel_prefix, or train_file/image_col")

    def expected_files(self) -> list[str]:
        return [self.sample_file, f"{self.train_dir}/ or {self.train_file}", f"{self.test_dir}/ or {self.test_file}"]

    def load(self, data_dir: Path) -> CompetitionData:
        data_dir = Path(data_dir)
        if self.layout(data_dir) in ("pixels", "csv"):
            return super().load(data_dir)
        train, test, sample, sample_path, notes = self.read_folders(data_dir)
        data = self.build_data(data_dir, train, test, sample, sample_path)
        data.notes += notes
        return data

    def read_files(self, data_dir: Path):
        if self.layout(data_dir) in ("pixels", "csv"):
            return super().read_files(data_dir)
        return self.read_folders(data_dir)[:4]

    def read_folders(self, data_dir: Path):
        """(train, test, sample, sample path, notes) of an image-folder layout: one row per image, its path, and
        the label from its folder or file name; the notes count the images that could not be read."""
        from kitbox.vision.data import from_filenames, from_folders, from_unlabelled

        layout = self.layout(data_dir)

        sample = read_table(data_dir, self.sample_file, what=" (the sample submission)", all_text=True)
        sample_path = find_file(data_dir, self.sample_file)
        id_col = self.id_col or sample.columns[0]
        items = (from_filenames(data_dir / self.train_dir, self.label_pattern) if layout == "filenames"
                 else from_folders(data_dir / self.train_dir))
        target = list(sample.columns[1:])[0] if self.target is None and sample.shape[1] == 2 else (self.target or "label")
        train = pd.DataFrame({id_col: items.ids, "path": [str(p) for p in items.paths],
                              target: [items.classes[i] for i in items.labels]})
        test_items = from_unlabelled(data_dir / self.test_dir)
        test = pd.DataFrame({id_col: [str(i) for i in test_items.ids], "path": [str(p) for p in test_items.paths]})
        notes = []
        if items.skipped:
            notes.append(f"training images: {items.skipped_summary()}")
        if test_items.skipped:
            notes.append(f"test images: {test_items.skipped_summary()}; their rows get the mean test prediction "
                         "(the most common label for a label metric)")
        return train, test, sample, sample_path, notes

    def target_columns(self, train, sample):
        if "path" in train.columns and self.target is None and sample.shape[1] == 2:
            return [sample.columns[1]] if sample.columns[1] in train.columns else [c for c in train.columns
                                                                                 if c not in ("path", sample.columns[0])]
        return super().target_columns(train, sample)

    def build_data(self, data_dir, train, test, sample, sample_path) -> CompetitionData:
        data = super().build_data(data_dir, train, test, sample, sample_path)
        self.attach_images(data)
        return data

    def attach_images(self, data: CompetitionData) -> None:
        from kitbox.vision.data import ImageItems, from_pixels

        if self.pixel_prefix:
            cols = [c for c in data.train.columns if c.startswith(self.pixel_prefix)]
            side = int(round(len(cols) ** 0.5))
            shape = self.image_shape or (side, side)
            wanted = [f"{self.pixel_prefix}{i}" for i in range(shape[0] * shape[1])]
            for file, table in ((self.train_file, data.train), (self.test_file, data.test)):
                missing = [c for c in wanted if c not in table.columns]
                if missing:  # a missing pixel fails here, at load, named: not inside the first fold
                    more = " and more" if len(missing) > 5 else ""
                    raise InputError(f"{data.data_dir / file} has no pixel column(s) {missing[:5]}{more}: a "
                                     f"{shape[0]}x{shape[1]} image is {len(wanted)} columns {wanted[0]}.."
                                     f"{wanted[-1]}")
            data.train_images = from_pixels(data.train, self.pixel_prefix, shape, label_col=None)
            data.test_images = from_pixels(data.test, self.pixel_prefix, shape, label_col=None)
            return
        if "path" not in data.train.columns:  # CSV layout: the image files named by a column
            folder = data.data_dir / self.train_dir
            col = self.image_col or data.columns.id
            data.train["path"] = [str(folder / f"{v}{self.image_suffix}") for v in data.train[col].astype(str)]
            test_folder = data.data_dir / self.test_dir
            data.test["path"] = [str(test_folder / f"{v}{self.image_suffix}") for v in data.test[col].astype(str)]
        data.train_images = ImageItems(paths=[Path(p) for p in data.train["path"]], ids=list(data.train[data.columns.id]))
        data.test_images = ImageItems(paths=[Path(p) for p in data.test["path"]], ids=list(data.test[data.columns.id]))

    def check_ids(self, data: CompetitionData) -> None:
        if "path" in data.test.columns:  # test images listed from the folder: unreadable ones get the prior
            return self._fill_missing_test(data)
        return super().check_ids(data)

    def _fill_missing_test(self, data: CompetitionData) -> None:
        id_col = data.columns.id
        have = set(data.test[id_col].astype(str))
        missing = [i for i in data.sample_submission[id_col] if i.strip() not in have]
        if len(missing) > 0.01 * len(data.sample_submission) + 5:
            raise InputError(f"{len(missing)} ids of {self.sample_file} have no image in {self.test_dir}/, e.g. "
                             f"{missing[:5]} (test files look like {sorted(have)[:3]})")
        data.extra["missing_test_ids"] = missing

    def recipes(self):
        from kitbox.recipes import vision

        if self.pixel_prefix:
            return {"small_cnn": vision.small_cnn}
        return {"linear_probe": vision.linear_probe, "cnn": vision.cnn}
