"""Data: dataset sources -> the standard table -> leak-checked splits -> prepared
ArrayRecord splits -> Grain loaders (multimodal.data.pipeline.inputs ties them together)."""
