"""The dataset flags, shared by the trainers (`trainers.common`) and `python -m tfkd.data.inspect`,
and `load_dataset`'s arguments from them.

The flags belong to the module that calls `define_data_flags` (absl attributes them past this
module), so a trainer's workdir `flags.txt` records them with its other flags.
"""

import dataclasses
import os

from absl import flags

from tfkd.data import catalog, checks, recipes
from tfkd.data.sources import DATA_DIR_ENV
from tfkd.errors import ConfigError, DataError

flags.disclaim_key_flags()

SEPARATORS = {"comma": ",", "tab": "\t", "whitespace": None, "space": " "}
RECIPE_FLAGS = ("min_rating", "min_user_interactions", "min_item_interactions", "kcore")
PRESPLIT_FILES = ("train_file", "valid_file", "test_file")


def define_data_flags(fv=flags.FLAGS):
  """Defines the dataset flags on `fv`; idempotent."""
  if "dataset" in fv:
    return
  d = dict(flag_values=fv)
  flags.DEFINE_enum("dataset", "citeulike-derrd", catalog.names(), "Dataset: "
                    + "; ".join(f"{name}, {spec.description}" for name, spec in
                                sorted(catalog.CATALOG.items()))
                    + " (each downloaded from a pinned URL, md5-checked, on first use); "
                    "synthetic, generated; file, --data_file; presplit, --train_file, "
                    "--valid_file and --test_file.", **d)
  flags.DEFINE_string("data_dir", None, "First directory searched for source data files "
                      f"(then ${DATA_DIR_ENV}, then the tfkd cache).", **d)
  flags.DEFINE_string("data_file", None, "With --dataset=file: the delimited file to read.", **d)
  for split in ("train", "valid", "test"):
    flags.DEFINE_string(f"{split}_file", None, f"With --dataset=presplit: the {split} file "
                        "(read like --data_file; ids any strings).", **d)
  flags.DEFINE_list("data_columns", ["user", "item", "rating", "timestamp"],
                    "With --dataset=file or presplit: column names in file order (user and item "
                    "required; other names are ignored); ignored with --data_header.", **d)
  flags.DEFINE_string("data_sep", "comma", "With --dataset=file or presplit: delimiter (comma, "
                      "tab, whitespace, or the character itself).", **d)
  flags.DEFINE_bool("data_header", False, "With --dataset=file or presplit: the first line "
                    "names the columns.", **d)
  flags.DEFINE_bool("allow_overlap", False, "Accept a given split (presplit) whose validation "
                    "or test items are training items of their user, or whose validation and "
                    "test item of a user are the same.", **d)
  flags.DEFINE_bool("allow_cold", False, "Accept a given split (presplit) whose held-out users "
                    "or items have no training row.", **d)
  flags.DEFINE_float("min_rating", None, "Recipe: keep rows rated at least this (default: "
                     "the catalog's recipe).", **d)
  flags.DEFINE_integer("min_user_interactions", None, "Recipe: drop users with fewer items.",
                       lower_bound=0, **d)
  flags.DEFINE_integer("min_item_interactions", None, "Recipe: drop items with fewer users.",
                       lower_bound=0, **d)
  flags.DEFINE_bool("kcore", None, "Recipe: repeat the user/item filters until stable.", **d)
  flags.DEFINE_enum("split", None, ["random", "timestamp"], "Leave-one-out split (default: "
                    "the catalog's).", **d)
  flags.DEFINE_integer("split_seed", 0, "Seed of the random split and evaluation candidates.", **d)
  flags.DEFINE_integer("num_candidates", 499, "Unobserved items per user for the sampled "
                       "protocol.", lower_bound=0, **d)


def _given_files(fv, names):
  """The paths of the file flags `names`, each given and an existing file."""
  for name in names:
    if not fv[name].value:
      raise ConfigError(f"--dataset={fv.dataset} needs --{name}")
  for name in names:
    if not os.path.isfile(fv[name].value):
      raise DataError(f"--{name}={fv[name].value}: file not found")
  return [fv[name].value for name in names]


def _refuse_unused(fv):
  used = {catalog.FILE: ("data_file",), catalog.PRESPLIT: PRESPLIT_FILES}.get(fv.dataset, ())
  for name in ("data_file",) + PRESPLIT_FILES:
    if fv[name].value and name not in used:
      reader = "file" if name == "data_file" else "presplit"
      raise ConfigError(f"--{name} is only read with --dataset={reader}, not "
                        f"--dataset={fv.dataset}")
  given = fv.dataset == catalog.PRESPLIT or (
      fv.dataset in catalog.CATALOG and catalog.CATALOG[fv.dataset].split == "given")
  overrides = [f"--{n}" for n in RECIPE_FLAGS + ("split",) if fv[n].value is not None]
  if given and overrides:
    raise ConfigError(f"{' '.join(overrides)} cannot be used with --dataset={fv.dataset}: its "
                      "split is given by its files")
  if not given and (fv.allow_overlap or fv.allow_cold):
    raise ConfigError(f"--allow_overlap and --allow_cold apply to a given split (presplit), not "
                      f"--dataset={fv.dataset}")


def dataset_kwargs(fv=flags.FLAGS):
  """load_dataset's spec / recipe / split / accept arguments from the data flags."""
  _refuse_unused(fv)
  kwargs = {}
  options = dict(columns=None if fv.data_header else fv.data_columns,
                 sep=SEPARATORS.get(fv.data_sep, fv.data_sep), header=fv.data_header)
  if fv.dataset == catalog.FILE:
    kwargs["spec"] = catalog.file_spec(*_given_files(fv, ("data_file",)),
                                       split=fv.split or "random", **options)
  elif fv.dataset == catalog.PRESPLIT:
    kwargs["spec"] = catalog.presplit_spec(*_given_files(fv, PRESPLIT_FILES), **options)
  overrides = {name: fv[name].value for name in RECIPE_FLAGS if fv[name].value is not None}
  if overrides:
    spec = catalog.CATALOG.get(fv.dataset)
    kwargs["recipe"] = dataclasses.replace(spec.recipe if spec else recipes.Recipe(), **overrides)
  if fv.split:
    kwargs["split"] = fv.split
  accept = tuple(c for flag, names in checks.ACCEPTED_BY_FLAG.items() if fv[flag].value
                 for c in names)
  if accept:
    kwargs["accept"] = accept
  return kwargs


def load_kwargs(fv=flags.FLAGS):
  """Every load_dataset argument from the data flags (with the dataset's name)."""
  return dict(name=fv.dataset, data_dir=fv.data_dir, split_seed=fv.split_seed,
              num_candidates=fv.num_candidates, **dataset_kwargs(fv))
