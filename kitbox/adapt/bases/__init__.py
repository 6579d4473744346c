"""Ready-made adapters for the common shapes of a Kaggle competition: a new one is a few class attributes.

``SegmentationCompetition`` reads masks (RLE or mask images) and writes RLE. ``TabularCompetition``,
``TextCompetition`` and ``ImageCompetition`` read the files (ids always as text), infer
the target column(s) and the task from ``sample_submission.csv`` and ``train.csv``, split stratified folds, and
map predictions onto the sample's rows and columns, whatever its shape: one label column, one probability
column, one column per class, several target columns, space-separated tags. Their default recipes take columns
and task from the data, so they serve any competition of that shape::

    class Titanic(TabularCompetition):
        slug = "titanic"
        metric_name = "accuracy"
"""
from kitbox.adapt.bases.image import ImageCompetition
from kitbox.adapt.bases.segmentation import SegmentationCompetition
from kitbox.adapt.bases.table import MAX_CAT_CARD, TableCompetition, encode_targets, find_file, is_text, read_table
from kitbox.adapt.bases.tabular import TabularCompetition
from kitbox.adapt.bases.text import TextCompetition

__all__ = ["ImageCompetition", "MAX_CAT_CARD", "SegmentationCompetition", "TableCompetition", "TabularCompetition", "TextCompetition",
           "encode_targets", "find_file", "is_text", "read_table"]
