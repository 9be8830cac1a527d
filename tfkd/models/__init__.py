"""Recommenders: each a `Recommender` with `score` / `score_all`, registered by name."""

from tfkd.errors import ConfigError
from tfkd.models.base import Recommender
from tfkd.models.bpr import BPR
from tfkd.models.neumf import NeuMF

MODELS = {"bpr": BPR, "neumf": NeuMF}


def get(name):
  """The model class registered under `name`."""
  try:
    return MODELS[name]
  except KeyError:
    raise ConfigError(f"unknown model {name!r}; expected one of {', '.join(sorted(MODELS))}")


def build(name, num_users, num_items, **config):
  model = get(name)(num_users, num_items, **config)
  model.build_for_dataset()
  return model
