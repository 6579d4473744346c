"""Image competitions: datasets from the usual Kaggle layouts, seeded loaders (workers, torchrun, on-device for small
images), albumentations pipelines, timm backbones with offline weights, cached backbone features for the frozen
phase, progressive resizing, TTA and multi-label."""
from kitbox.vision.data import (
    DeviceImageLoader, ImageDataset, ImageItems, ImageLoader, SkippedImage, UnreadableImageError, check_images,
    from_csv, from_filenames, from_folders, from_pixels, from_unlabelled, image_loader, loader_settings, read_image,
)
from kitbox.vision.features import cached_features, compute_features
from kitbox.vision.models import (
    SmallConvNet, WeightsDownloadFailed, WeightsNotFound, create_model, find_weights, head_of, locate_weights,
    pooled_features,
)
from kitbox.vision.multilabel import best_thresholds, two_digit_images
from kitbox.vision.speed import loader_vs_step
from kitbox.vision.transforms import Norm, norm_of, train_tfms, tta_tfms, valid_tfms
from kitbox.vision.tta import blend, predict_tta, resize_and_fit, set_transforms, tta_loaders

__all__ = [
    "DeviceImageLoader", "ImageDataset", "ImageItems", "ImageLoader", "SkippedImage", "UnreadableImageError",
    "check_images", "from_csv", "from_filenames", "from_folders", "from_pixels", "from_unlabelled", "image_loader",
    "loader_settings", "read_image", "cached_features", "compute_features", "SmallConvNet", "WeightsDownloadFailed",
    "WeightsNotFound", "create_model", "find_weights", "head_of", "locate_weights", "pooled_features",
    "best_thresholds", "two_digit_images", "loader_vs_step", "Norm", "norm_of", "train_tfms", "tta_tfms", "valid_tfms",
    "blend", "predict_tta", "resize_and_fit", "set_transforms", "tta_loaders",
]
