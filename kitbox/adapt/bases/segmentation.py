"""Masks to predict, one per image: ``SegmentationCompetition`` (TGS Salt, Carvana, SIIM, HuBMAP...).

Training masks come from a CSV of run-length encodings (``id,rle_mask``; empty for no mask) or from a folder of
mask images named like the training images. The submission is the sample's table with one RLE per test image,
written and checked like every other submission (each RLE decoded against its image's size). Predictions are
pixel probabilities at ``mask_shape``; ``decide`` picks the probability cut and the smallest component kept on
OOF (and the pipeline scores that choice on folds it was not made on); ``apply`` makes the masks.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kitbox.adapt.bases.table import find_file, read_table
from kitbox.adapt.contract import Columns, Competition, CompetitionData
from kitbox.errors import InputError
from kitbox.io.rle import RLEError, rle_decode, rle_encode
from kitbox.pipeline import splits

CUTS = tuple(np.round(np.arange(0.2, 0.81, 0.05), 2).tolist())  # probability cuts decide() tries
MIN_SIZES = (0, 0.0005, 0.001, 0.002, 0.005, 0.01)  # smallest component kept, as a share of the image's pixels


def image_files(folder: Path) -> dict[str, Path]:
    """Image files of ``folder`` by their name without suffix."""
    if not folder.is_dir():
        return {}
    from kitbox.vision.data import IMAGE_SUFFIXES

    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def read_gray(path: Path) -> np.ndarray:
    """An image file as a 2-D array (masks: any non-zero pixel is the object); a GIF (Carvana) through PIL."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"))
    except OSError as e:
        raise InputError(f"{path} is not a readable image: {e}") from None


def image_shape(path: Path) -> tuple[int, int]:
    """(height, width) of an image file, read from its header."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.height, im.width
    except OSError as e:
        raise InputError(f"{path} is not a readable image: {e}") from None


def remove_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    """``mask`` without its connected components (8-connected) of fewer than ``min_size`` pixels."""
    if min_size <= 0 or not mask.any():
        return mask
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels]


class SegmentationCompetition(Competition):
    """Masks, one per image (binary) or one per image and class. Layout (TGS Salt's): ``train/images/ID.png``,
    ``train.csv`` (id, RLE) or ``train/masks/ID.png``, ``test/images/ID.png``, ``sample_submission.csv`` (id, RLE).
    Set the attributes where a competition differs; e.g. Carvana: ``train_dir = "train"``, ``mask_dir =
    "train_masks"``, ``rle_file = "train_masks.csv"``, ``rle_order = "C"``, ``id_suffix = ".jpg"``.

    Several classes: ``class_col`` when each row names an image and a class (Severstal: ``class_col = "ClassId"``,
    the RLE file lists only the masks that are there and every image of ``train_dir`` trains), ``key_sep`` when
    the first column joins them (Understanding Clouds' ``"0011165.jpg_Fish"``: ``key_sep = "_"``), or
    ``mask_values = {class: pixel value}`` for mask images holding a value per class. The classes are the
    sample's; masks are then (images, classes, height, width), one sigmoid per class (classes may overlap), the
    cut and smallest component are chosen per class, and Dice is the mean over (image, class) pairs."""

    metric_name = "dice"
    train_dir: str = "train/images"  # the training images, named by id
    test_dir: str = "test/images"
    mask_dir: str = "train/masks"  # mask images named like the training images (used when there is no rle_file)
    rle_file: str | None = "train.csv"  # ids and run-length encoded masks (empty: nothing); None: mask images
    sample_file: str = "sample_submission.csv"
    rle_order: str = "F"  # "F": pixels numbered down each column first (most competitions); "C": row by row
    id_suffix: str = ""  # a suffix ids carry that file names don't need, e.g. ".jpg" (Carvana's ids are file names)
    mask_shape: tuple[int, int] | None = None  # where masks are predicted and scored; None: the images' own shape
    class_col: str | None = None  # several classes: the column naming each row's class (RLE file and sample)
    key_sep: str | None = None  # several classes: first-column keys "ID{key_sep}CLASS"
    mask_values: dict | None = None  # several classes in mask images: {class: its pixel value}

    @property
    def multiclass(self) -> bool:
        return bool(self.class_col or self.key_sep or self.mask_values)

    # ------------------------------------------------------------------ reading
    def load(self, data_dir: Path) -> CompetitionData:
        data_dir = Path(data_dir)
        sample = read_table(data_dir, self.sample_file, what=" (the sample submission)", all_text=True)
        id_col, rle_col, image_ids, row_classes = self._sample_layout(sample, data_dir)
        classes = self._classes(row_classes)
        if self.multiclass:
            train, rles = self._multi_train_table(data_dir, id_col, rle_col, classes)
        else:
            train, rles = self._train_table(data_dir, id_col, rle_col), None
        test = pd.DataFrame({id_col: list(dict.fromkeys(image_ids))})
        test["path"] = self._paths(data_dir / self.test_dir, test[id_col], "test")
        shapes = {i: image_shape(Path(p)) for i, p in zip(test[id_col], test["path"])}
        train_shapes = [image_shape(Path(p)) for p in train["path"]]
        shape = self.mask_shape or self._common_shape(train_shapes, data_dir)
        if self.multiclass:
            masks = np.stack([self._class_masks(row, rles, classes, s, shape)
                              for row, s in zip(train.itertuples(index=False), train_shapes)])
        else:
            masks = np.stack([self._mask(row, rle_col, s, shape) for row, s in zip(train.itertuples(index=False),
                                                                                    train_shapes)])
        data = CompetitionData(train=train, test=test, sample_submission=sample, data_dir=data_dir,
                               sample_path=find_file(data_dir, self.sample_file), task="segmentation",
                               columns=Columns(id=id_col, target=[rle_col]), classes=classes)
        keys = sample[sample.columns[0]].str.strip()  # what the checker finds each submission row's image by
        if self.class_col:  # one row per image and class: the two name a row of the submission
            data.extra["submission_key"] = [id_col, self.class_col]
        data.extra.update(masks=masks, mask_shape=shape, test_shapes=shapes,
                          rle_pixels={rle_col: {k: int(np.prod(shapes[i])) for k, i in zip(keys, image_ids)}})
        data.notes.append(self._masks_note(masks, shape, classes))
        return data

    def _masks_note(self, masks: np.ndarray, shape, classes: list) -> str:
        empty = int((masks.reshape(len(masks), -1).sum(1) == 0).sum())
        text = f"masks: {len(masks)} training images at {shape[0]}x{shape[1]}, {empty} with no object"
        if classes:
            present = masks.reshape(len(masks), len(classes), -1).any(-1).sum(0)
            text += "; images with each class: " + ", ".join(f"{c} {int(n)}" for c, n in zip(classes, present))
        return text

    def _sample_layout(self, sample: pd.DataFrame, data_dir: Path):
        """(id column, RLE column, the image id of each sample row, the class of each row or None)."""
        where = data_dir / self.sample_file
        first = sample.columns[0]
        if self.class_col:
            if self.class_col not in sample.columns or sample.shape[1] != 3:
                raise InputError(f"{where} has columns {list(sample.columns)}: with class_col={self.class_col!r} "
                                 "the sample has three, the image id, the class and the run-length encoded mask")
            rle_col = next(c for c in sample.columns[1:] if c != self.class_col)
            return first, rle_col, list(sample[first].str.strip()), list(sample[self.class_col].str.strip())
        if sample.shape[1] != 2:
            raise InputError(f"{where} has columns {list(sample.columns)}: a segmentation sample has two, the id and "
                             "its run-length encoded mask (or set class_col for one row per image and class)")
        keys = list(sample[first].str.strip())
        if self.key_sep:
            bad = [k for k in keys if self.key_sep not in k]
            if bad:
                raise InputError(f"{where}: {first} {bad[0]!r} has no {self.key_sep!r} between the image id and the "
                                 "class (key_sep)")
            parts = [k.rsplit(self.key_sep, 1) for k in keys]
            return first, sample.columns[1], [p[0] for p in parts], [p[1] for p in parts]
        return first, sample.columns[1], keys, None

    def _classes(self, row_classes) -> list:
        if self.mask_values:
            return [str(c) for c in self.mask_values]
        if row_classes is None:
            return []
        return sorted(set(row_classes), key=lambda c: (len(c), c))  # "2" before "10"

    def _multi_train_table(self, data_dir: Path, id_col: str, rle_col: str, classes: list):
        """Every image of ``train_dir``, and {(image id, class): RLE} from the RLE file (absent: no mask)."""
        images = image_files(data_dir / self.train_dir)
        if not images:
            raise InputError(f"no training images in {data_dir / self.train_dir}/: set train_dir")
        if self.mask_values:
            masks = image_files(data_dir / self.mask_dir)
            ids = sorted(set(masks) & set(images))
            if not ids:
                raise InputError(f"no mask in {data_dir / self.mask_dir}/ is named like an image of "
                                 f"{data_dir / self.train_dir}/: set mask_dir")
            return pd.DataFrame({id_col: ids, "path": [str(images[i]) for i in ids],
                                 "mask_path": [str(masks[i]) for i in ids]}), None
        if not self.rle_file or find_file(data_dir, self.rle_file) is None:
            raise InputError(f"no {self.rle_file or 'rle_file'} in {data_dir}: several classes need the RLE file "
                             "(or mask images with mask_values)")
        table = read_table(data_dir, self.rle_file, all_text=True)
        if self.class_col:
            if self.class_col not in table.columns:
                raise InputError(f"{data_dir / self.rle_file} has no column {self.class_col!r} (class_col); its "
                                 f"columns are {list(table.columns)}")
            rlec = rle_col if rle_col in table.columns else table.columns[-1]
            idc = id_col if id_col in table.columns else table.columns[0]
            pairs = zip(table[idc].str.strip(), table[self.class_col].str.strip(), table[rlec])
        else:
            keys = table[table.columns[0]].str.strip().str.rsplit(self.key_sep, n=1)
            pairs = ((k[0], k[1] if len(k) > 1 else "", r) for k, r in zip(keys, table[table.columns[-1]]))
        rles = {}
        for image, cls, rle in pairs:
            if cls not in classes:
                raise InputError(f"{data_dir / self.rle_file}: image {image} has class {cls!r}, which the sample "
                                 f"submission does not have (its classes: {classes})")
            if isinstance(rle, str) and rle.strip():
                rles[(image, cls)] = rle
        stems = {i[: -len(self.id_suffix)] if self.id_suffix and i.endswith(self.id_suffix) else i for i, _ in rles}
        missing = sorted(stems - set(images))
        if missing:
            raise InputError(f"{self.rle_file} has masks for {len(missing)} image(s) with no file in "
                             f"{data_dir / self.train_dir}/, e.g. {missing[:5]}; set train_dir or id_suffix")
        ids = sorted(images)
        return pd.DataFrame({id_col: [i + self.id_suffix if self.id_suffix else i for i in ids],
                             "path": [str(images[i]) for i in ids]}), rles

    def _class_masks(self, row, rles, classes: list, own: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
        """(classes, height, width) masks of one training image."""
        image_id = row[0]
        if rles is None:
            values = read_values(Path(row.mask_path))
            if values.shape != own:
                raise InputError(f"mask {row.mask_path} is {values.shape[0]}x{values.shape[1]}, its image is "
                                 f"{own[0]}x{own[1]}")
            layers = [values == v for v in self.mask_values.values()]
        else:
            layers = []
            for cls in classes:
                try:
                    layers.append(rle_decode(rles.get((image_id, cls), ""), own, order=self.rle_order))
                except RLEError as e:
                    raise InputError(f"{self.rle_file}, image {image_id} class {cls}: {e} (image {own[0]}x{own[1]}; "
                                     f"rle_order={self.rle_order!r})") from None
        return np.stack([resize_mask(m, shape) for m in layers]).astype(np.uint8)

    def expected_files(self) -> list[str]:
        return [self.sample_file, f"{self.train_dir}/", f"{self.rle_file} or {self.mask_dir}/", f"{self.test_dir}/"]

    def _train_table(self, data_dir: Path, id_col: str, rle_col: str) -> pd.DataFrame:
        if self.rle_file and find_file(data_dir, self.rle_file) is not None:
            table = read_table(data_dir, self.rle_file, all_text=True)
            idc = id_col if id_col in table.columns else table.columns[0]
            rlec = rle_col if rle_col in table.columns else table.columns[-1]
            train = pd.DataFrame({id_col: table[idc].str.strip(), rle_col: table[rlec]})
            train["path"] = self._paths(data_dir / self.train_dir, train[id_col], "training")
            return train
        masks = image_files(data_dir / self.mask_dir)
        if not masks:
            raise InputError(f"no training masks in {data_dir}: neither {self.rle_file or 'rle_file'} (id, run-length "
                             f"encoded mask) nor mask images in {data_dir / self.mask_dir}/. Set rle_file or mask_dir")
        images = image_files(data_dir / self.train_dir)
        ids = sorted(set(masks) & set(images))
        if not ids:
            raise InputError(f"no mask in {data_dir / self.mask_dir}/ is named like an image of "
                             f"{data_dir / self.train_dir}/ (masks look like {sorted(masks)[:3]}, images like "
                             f"{sorted(images)[:3]})")
        return pd.DataFrame({id_col: ids, "path": [str(images[i]) for i in ids],
                             "mask_path": [str(masks[i]) for i in ids]})

    def _paths(self, folder: Path, ids: pd.Series, what: str) -> list[str]:
        files = image_files(folder)
        stems = [i[: -len(self.id_suffix)] if self.id_suffix and i.endswith(self.id_suffix) else i for i in ids]
        missing = [i for i, s in zip(ids, stems) if s not in files]
        if missing:
            raise InputError(f"{len(missing)} {what} id(s) have no image in {folder}/, e.g. {missing[:5]} (files look "
                             f"like {sorted(files)[:3]}); set {'train_dir' if what == 'training' else 'test_dir'} "
                             "or id_suffix")
        return [str(files[s]) for s in stems]

    def _common_shape(self, shapes: list[tuple[int, int]], data_dir: Path) -> tuple[int, int]:
        distinct = sorted(set(shapes))
        if len(distinct) > 1:
            raise InputError(f"the training images of {data_dir / self.train_dir} have {len(distinct)} sizes, e.g. "
                             f"{distinct[:3]}: set mask_shape = (height, width) in the adapter, the size masks are "
                             "predicted and scored at")
        return distinct[0]

    def _mask(self, row, rle_col: str, own: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
        if hasattr(row, "mask_path"):
            mask = read_gray(Path(row.mask_path)) > 0
            if mask.shape != own:
                raise InputError(f"mask {row.mask_path} is {mask.shape[0]}x{mask.shape[1]}, its image is "
                                 f"{own[0]}x{own[1]}")
        else:
            try:
                mask = rle_decode(getattr(row, rle_col), own, order=self.rle_order)
            except RLEError as e:
                raise InputError(f"{self.rle_file}, id {row[0]}: {e} (image {own[0]}x{own[1]}; rle_order="
                                 f"{self.rle_order!r})") from None
        return resize_mask(mask, shape).astype(np.uint8)

    # ------------------------------------------------------------------ the contract
    def targets(self, data: CompetitionData) -> np.ndarray:
        return data.extra["masks"]

    def split(self, data: CompetitionData, n_folds: int, seed: int) -> np.ndarray:
        """Folds stratified by how much of each image is object (none, then quartiles), as TGS Salt's winners
        split: each fold gets its share of empty and of crowded images."""
        cover = data.extra["masks"].reshape(len(data.extra["masks"]), -1).mean(1)
        bins = np.zeros(len(cover), np.int64)
        some = cover > 0
        if some.sum() >= 4 * n_folds:
            bins[some] = 1 + np.searchsorted(np.quantile(cover[some], [0.25, 0.5, 0.75]), cover[some])
        else:
            bins[some] = 1
        if np.bincount(bins).min() < n_folds:
            return splits.kfold(len(cover), n_folds, seed)
        return splits.stratified_kfold(bins, n_folds, seed)

    def recipes(self):
        from kitbox.recipes import segmentation

        return {"unet": segmentation.unet}

    def decide(self, oof: np.ndarray, y: np.ndarray) -> dict:
        """The probability cut, then the smallest component kept, that score best on these rows (per class when
        there are several: ``{"cut": [...], "min_size": [...]}``)."""
        if np.asarray(oof).ndim == 4:
            per_class = [self.decide(oof[:, c], y[:, c]) for c in range(oof.shape[1])]
            return {k: [d[k] for d in per_class] for k in ("cut", "min_size")}
        metric = self.metric
        pixels = int(np.prod(oof.shape[1:]))
        best_cut = max(CUTS, key=lambda c: (metric(y, oof > c), -abs(c - 0.5)))
        sizes = sorted({int(round(f * pixels)) for f in MIN_SIZES})
        best_size = max(sizes, key=lambda s: (metric(y, self.apply(oof, {"cut": best_cut, "min_size": s})), -s))
        return {"cut": float(best_cut), "min_size": int(best_size)}

    def apply(self, pred: np.ndarray, decided: dict) -> np.ndarray:
        pred = np.asarray(pred)
        if pred.ndim == 4:
            n = pred.shape[1]
            cuts, sizes = decided.get("cut", [0.5] * n), decided.get("min_size", [0] * n)
            return np.stack([self.apply(pred[:, c], {"cut": cuts[c], "min_size": sizes[c]}) for c in range(n)], 1)
        masks = pred > decided.get("cut", 0.5)
        size = decided.get("min_size", 0)
        if size:
            masks = np.stack([remove_small(m, size) for m in masks])
        return masks

    def submission(self, data: CompetitionData, pred: np.ndarray) -> pd.DataFrame:
        if self.multiclass:
            return self._multi_submission(data, pred)
        id_col, rle_col = data.sample_submission.columns
        rles = [rle_encode(resize_mask(m, data.extra["test_shapes"][i]), order=self.rle_order)
                for i, m in zip(data.test[id_col], pred)]
        by_id = dict(zip(data.test[id_col], rles))
        return pd.DataFrame({id_col: data.sample_submission[id_col],
                             rle_col: [by_id[i.strip()] for i in data.sample_submission[id_col]]})


    def _multi_submission(self, data: CompetitionData, pred: np.ndarray) -> pd.DataFrame:
        """The sample's rows, each (image, class) with its mask's RLE at the image's own size."""
        sample = data.sample_submission
        id_col, rle_col, image_ids, row_classes = self._sample_layout(sample, data.data_dir)
        at = {i: k for k, i in enumerate(data.test[data.columns.id])}
        channel = {c: k for k, c in enumerate(data.classes)}
        shapes = data.extra["test_shapes"]
        out = sample.copy()
        out[rle_col] = [rle_encode(resize_mask(pred[at[i], channel[c]], shapes[i]), order=self.rle_order)
                        for i, c in zip(image_ids, row_classes)]
        return out


def read_values(path: Path) -> np.ndarray:
    """A mask image's own pixel values (class indices stay indices: a palette image is not turned into gray)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im if im.mode in ("L", "P", "I", "I;16") else im.convert("L"))
    except OSError as e:
        raise InputError(f"{path} is not a readable image: {e}") from None


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask at ``shape`` (nearest neighbour; unchanged when it already has it)."""
    mask = np.asarray(mask).astype(bool)
    if mask.shape == tuple(shape):
        return mask
    import cv2

    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
