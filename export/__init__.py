"""Entry points that export trained models (see `tfkd.serving`)."""
