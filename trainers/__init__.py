"""Thin command-line entry points over the tfkd library."""

from tfkd import console

console.import_tensorflow_quietly()  # before anything else imports TensorFlow
