"""multimodal: medical image classifiers fused with patient metadata (JAX/Flax NNX)."""

__version__ = "0.1.0"
