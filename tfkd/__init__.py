"""tfkd: knowledge distillation for top-N recommenders in TensorFlow / Keras 3."""

__version__ = "0.1.0"
