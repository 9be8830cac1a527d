"""A method's absl flags generated from its config dataclass, and the config built back from them.

Each setting is defined once, as a dataclass field whose metadata (`setting(...)`) gives its help
text, its bounds or choices and, where the flag's name is not `<prefix><field>`, that name:

  top: int = setting(500, "Teacher top list the K items are drawn from.", lower=1)

`define_flags(cls, prefix)` defines `--<prefix>top` with that default, help and bound;
`from_flags(cls, prefix)` builds the config from the parsed flags; `check(config)` enforces the
same bounds on a config built in Python. A field of another config class (`nested="rrd_"`) brings
that config's flags under its own prefix. A field marked `common="seed"` reads a flag every
trainer defines (`--seed`, `--knowledge_chunk_size`, `--refresh_every`) instead of its own; such a
flag may default to None, meaning the config's own default.
"""

import dataclasses
import typing

from absl import flags

from tfkd.errors import ConfigError

FLAGS = flags.FLAGS


def setting(default=dataclasses.MISSING, help="", *, flag=None, lower=None, upper=None,
            choices=None, scale=1, common=None, nested=None, default_factory=dataclasses.MISSING):
  """A config field with what its flag needs (see the module docstring).

  `scale`: the field holds the flag's value times this (a `--*_cache_mb` flag for a byte count).
  """
  metadata = dict(help=help, flag=flag, lower=lower, upper=upper, choices=choices, scale=scale,
                  common=common, nested=nested)
  return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def _fields(cls):
  hints = typing.get_type_hints(cls)
  for f in dataclasses.fields(cls):
    if f.metadata.get("help") is not None or f.metadata.get("nested") or f.metadata.get("common"):
      yield f, hints[f.name]


def flag_name(f, prefix):
  return f.metadata.get("common") or f.metadata.get("flag") or prefix + f.name


def _default(f):
  if f.default_factory is not dataclasses.MISSING:
    return f.default_factory()
  return f.default


def flag_names(cls, prefix):
  """The flags a config class reads (its nested configs' included, common flags excluded)."""
  names = set()
  for f, kind in _fields(cls):
    if f.metadata.get("nested"):
      names |= flag_names(kind, f.metadata["nested"])
    elif not f.metadata.get("common"):
      names.add(flag_name(f, prefix))
  return names


def define_flags(cls, prefix, fv=FLAGS):
  """Defines the flags of `cls` (and of its nested configs) on `fv`; those already defined (a
  nested config shared by two methods) are kept."""
  for f, kind in _fields(cls):
    if f.metadata.get("nested"):
      define_flags(kind, f.metadata["nested"], fv)
      continue
    name = flag_name(f, prefix)
    if f.metadata.get("common") or name in fv:
      continue
    m, default = f.metadata, _default(f)
    if m["scale"] != 1:
      default //= m["scale"]
    kwargs = dict(flag_values=fv)
    if kind is bool:
      flags.DEFINE_bool(name, default, m["help"], **kwargs)
    elif m["choices"]:
      flags.DEFINE_enum(name, default, list(m["choices"]), m["help"], **kwargs)
    elif kind is str:
      flags.DEFINE_string(name, default, m["help"], **kwargs)
    else:
      define = flags.DEFINE_integer if kind is int else flags.DEFINE_float
      define(name, default, m["help"], lower_bound=m["lower"], upper_bound=m["upper"], **kwargs)


def from_flags(cls, prefix, fv=FLAGS):
  """A `cls` config from the parsed flags of `fv` (common flags left at None keep the field's
  default)."""
  values = {}
  for f, kind in _fields(cls):
    if f.metadata.get("nested"):
      values[f.name] = from_flags(kind, f.metadata["nested"], fv)
      continue
    value = fv[flag_name(f, prefix)].value
    if value is None and f.metadata.get("common"):
      continue
    values[f.name] = value * f.metadata["scale"] if f.metadata["scale"] != 1 else value
  return cls(**values)


def check(config, what):
  """Raises a one-line ConfigError for a field outside its bounds or choices."""
  for f, _ in _fields(type(config)):
    value, m = getattr(config, f.name), f.metadata
    if m.get("nested") or m.get("common"):
      continue
    if m["choices"] and value not in m["choices"]:
      raise ConfigError(f"{what} {f.name} must be one of {', '.join(m['choices'])}, "
                        f"got {value!r}")
    lower = None if m["lower"] is None else m["lower"] * m["scale"]
    upper = None if m["upper"] is None else m["upper"] * m["scale"]
    if (lower is not None and value < lower) or (upper is not None and value > upper):
      bounds = (f">= {lower}" if upper is None else f"<= {upper}" if lower is None
                else f"in [{lower}, {upper}]")
      raise ConfigError(f"{what} {f.name} must be {bounds}, got {value}")
