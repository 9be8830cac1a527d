"""Recommenders: each a `Recommender` with `score` / `score_all`, registered by name."""

from tfkd.errors import ConfigError
from tfkd.models.base import Recommender
from tfkd.models.bpr import BPR
from tfkd.models.caser import Caser
from tfkd.models.cdae import CDAE
from tfkd.models.neumf import NeuMF

MODELS = {"bpr": BPR, "caser": Caser, "cdae": CDAE, "neumf": NeuMF}


def register(name):
  """Registers a `Recommender` subclass under `name` (`--model=<name>`, `build`, the tests that
  run every model): `@models.register("mine")` on the class."""
  def wrap(cls):
    if name in MODELS:
      raise ValueError(f"model {name!r} is already registered")
    MODELS[name] = cls
    return cls
  return wrap


def get(name):
  """The model class registered under `name`."""
  try:
    return MODELS[name]
  except KeyError:
    raise ConfigError(f"unknown model {name!r}; expected one of {', '.join(sorted(MODELS))}")


def build(name, num_users, num_items, **config):
  """A model of the catalog's size with its variables created (for models without data state,
  or whose config carries the state's shapes, as a reloaded checkpoint's does)."""
  model = get(name)(num_users, num_items, **config)
  model.build_for_dataset()
  return model


def build_for(name, dataset, **config):
  """A new model for `dataset`, holding the data state it scores from (CDAE: each user's
  training row) via `attach`."""
  model = get(name)(dataset.num_users, dataset.num_items, **config)
  model.attach(dataset)
  model.build_for_dataset()
  return model
