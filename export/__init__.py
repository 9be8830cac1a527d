"""Entry points that export trained models (see `tfkd.serving`)."""

from tfkd import console

console.import_tensorflow_quietly()  # before anything else imports TensorFlow
