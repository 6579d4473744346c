"""Tabular modality: preprocessing fitted on train only, entity-embedding networks, embedding export, LightGBM.

Names are imported on first use, so reading a competition's feature code does not load torch.
"""
from kitbox import lazy_exports

_LAZY = {
    "TabularProcessor": "kitbox.tabular.processor",
    "TabularModel": "kitbox.tabular.model",
    "embedding_width": "kitbox.tabular.model",
    "embedding_frames": "kitbox.tabular.model",
    "add_embeddings": "kitbox.tabular.model",
    "save_embeddings": "kitbox.tabular.model",
    "load_embeddings": "kitbox.tabular.model",
    "tabular_learner": "kitbox.tabular.training",
    "tabular_loaders": "kitbox.tabular.training",
    "prediction_loader": "kitbox.tabular.training",
    "log_y_range": "kitbox.tabular.training",
    "auto_epochs": "kitbox.tabular.training",
    "auto_layers": "kitbox.tabular.training",
    "auto_batch_size": "kitbox.tabular.training",
    "RMSPE_OF_LOG": "kitbox.tabular.training",
    "add_datepart": "kitbox.tabular.features",
    "days_since_until": "kitbox.tabular.features",
    "window_counts": "kitbox.tabular.features",
    "fit_lightgbm": "kitbox.tabular.gbm",
    "predict_lightgbm": "kitbox.tabular.gbm",
}

__all__ = sorted(_LAZY)
__getattr__ = lazy_exports("kitbox.tabular", _LAZY)
