"""Each method setting is defined once: its flag is generated from its config dataclass field."""

import dataclasses

import pytest
from absl import flags

from tfkd import config_flags, distill
from tfkd.errors import ConfigError


def _flags(*args):
  """A private FlagValues with every method's flags and the common ones, parsed from `args`."""
  fv = flags.FlagValues()
  for name in ("seed", "knowledge_chunk_size"):
    flags.DEFINE_integer(name, {"seed": 0}.get(name, 1024), "", flag_values=fv)
  flags.DEFINE_integer("refresh_every", None, "", flag_values=fv)
  distill.define_flags(fv)
  fv(["prog", *args])
  return fv


def _leaf_fields(cls, prefix):
  for f in dataclasses.fields(cls):
    if f.metadata.get("nested"):
      yield from _leaf_fields(f.type if isinstance(f.type, type) else f.default_factory,
                              f.metadata["nested"])
    elif f.metadata.get("help") is not None and not f.metadata.get("common"):
      yield config_flags.flag_name(f, prefix), f


@pytest.mark.parametrize("method", sorted(distill.METHODS))
def test_every_method_flag_defaults_to_its_dataclass_default(method):
  cls = distill.METHODS[method]
  fv = _flags()
  names = set()
  for name, f in _leaf_fields(cls.config_class, cls.flag_prefix):
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    assert fv[name].default * f.metadata["scale"] == default, name
    assert fv[name].help.endswith(f.metadata["help"]), name  # enums prefix their choices
    names.add(name)
  assert names == config_flags.flag_names(cls.config_class, cls.flag_prefix)
  # No flag set: the config is the dataclass's default.
  assert distill.config_from_flags(method, fv) == cls.config_class()


def test_flags_reach_nested_and_scaled_fields():
  fv = _flags("--rrd_k=7", "--dcd_cache_mb=2", "--dcd_top=60", "--refresh_every=3", "--seed=4")
  config = distill.config_from_flags("dcd", fv)
  assert (config.rrd.num_interesting, config.cache_bytes, config.top) == (7, 2 << 20, 60)
  assert (config.refresh_every, config.seed, config.rrd.seed) == (3, 4, 4)
  assert distill.config_from_flags("cd", _flags()).refresh_every == distill.CDConfig().refresh_every


@pytest.mark.parametrize("method, flag, owner", [
    ("rrd", "--dcd_top=30", "dcd"), ("cd", "--rd_top=5", "rd"), ("rd", "--rrd_k=3", "dcd"),
    ("dcd", "--cd_alpha=1", "cd")])
def test_a_flag_of_another_method_is_refused(method, flag, owner):
  name = flag[2:].split("=")[0]
  with pytest.raises(ConfigError) as e:
    distill.config_from_flags(method, _flags(flag))
  assert str(e.value) == f"--{name} is a setting of --method={owner}, not of --method={method}"


def test_dcd_reads_rrd_flags():
  assert distill.config_from_flags("dcd", _flags("--rrd_k=9")).rrd.num_interesting == 9


def test_bounds_are_checked_on_configs_built_in_python():
  with pytest.raises(ConfigError, match=r"^rrd num_uninteresting must be >= 0, got -1$"):
    distill.RRDConfig(num_uninteresting=-1).validate()
  with pytest.raises(ConfigError, match=r"^dcd num_over must be >= 0, got -1$"):
    distill.DCDConfig(num_over=-1).validate()
  with pytest.raises(ConfigError, match=r"^dcd candidates must be one of"):
    distill.DCDConfig(candidates="nope").validate()
