"""Generic training recipes, configured by the data's columns and task rather than one competition's names:
``tabular`` (LightGBM, entity embeddings), ``text`` (TF-IDF, sentence vectors, a transformer, ULMFiT) and
``vision`` (a linear head on frozen features, a pretrained timm CNN, a small CNN for tiny images)."""
