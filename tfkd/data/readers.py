"""Readers for the interaction formats tfkd knows.

Every reader returns a `RawLog` (one row per interaction, raw ids as found in the file) and
raises `DataError` naming the file and line for anything it cannot read: a non-integer token, a
count that disagrees with its line, an empty file, a missing column, a negative or out-of-range id.
"""

import dataclasses
import os
from typing import Optional, Sequence

import numpy as np

from tfkd.errors import DataError

USER, ITEM, RATING, TIMESTAMP = "user", "item", "rating", "timestamp"
KNOWN_COLUMNS = (USER, ITEM, RATING, TIMESTAMP)


@dataclasses.dataclass
class RawLog:
  """Interactions as read: raw user and item ids (strings), optional ratings and timestamps."""

  users: np.ndarray  # [n] str
  items: np.ndarray  # [n] str
  ratings: Optional[np.ndarray] = None  # [n] float64
  timestamps: Optional[np.ndarray] = None  # [n] float64
  source: str = ""

  def __len__(self):
    return len(self.users)


def _lines(path):
  """Yields (line_number, stripped_line) and refuses a missing or empty file."""
  if not os.path.isfile(path):
    raise DataError(f"{path}: file not found")
  empty = True
  with open(path, "r", encoding="utf-8", errors="replace") as f:
    for number, line in enumerate(f, start=1):
      line = line.strip()
      if line:
        empty = False
      yield number, line
  if empty:
    raise DataError(f"{path}: file is empty, expected interaction records")


def _int(token, path, number, what):
  try:
    value = int(token)
  except ValueError:
    raise DataError(f"{path}:{number}: expected an integer {what}, got {token!r}") from None
  if value < 0:
    raise DataError(f"{path}:{number}: expected a non-negative {what}, got {value}")
  return value


def _float(token, path, number, what):
  try:
    return float(token)
  except ValueError:
    raise DataError(f"{path}:{number}: expected a number for {what}, got {token!r}") from None


def read_citeulike(path) -> RawLog:
  """CiteULike `users.dat`: line u is `<count> <item> <item> ...`; the user's raw id is u (0-based)."""
  users, items = [], []
  user = -1
  for number, line in _lines(path):
    user += 1
    if not line:
      raise DataError(f"{path}:{number}: empty line, expected '<count> <item> ...'")
    tokens = line.split()
    count = _int(tokens[0], path, number, "count")
    ids = [_int(t, path, number, "item id") for t in tokens[1:]]
    if count != len(ids):
      raise DataError(f"{path}:{number}: count says {count} items but the line lists {len(ids)}")
    users.extend([str(user)] * len(ids))
    items.extend(str(i) for i in ids)
  return RawLog(np.asarray(users, dtype=str), np.asarray(items, dtype=str), source=os.fspath(path))


def read_delimited(
    path,
    columns: Optional[Sequence[str]] = None,
    sep: Optional[str] = "\t",
    header: bool = False,
    integer_ids: bool = True,
) -> RawLog:
  """A delimited file with user, item and optional rating and timestamp columns.

  Args:
    path: the file.
    columns: names of the file's columns in order (`user`, `item`, `rating`, `timestamp`; any
      other name is ignored). With `header=True` the names come from the first line instead.
    sep: the delimiter; None splits on any whitespace.
    header: whether the first line names the columns.
    integer_ids: require user and item ids to be non-negative integers.

  Without `header`, a first row whose ids are not numbers while every other row's are is refused
  as a header read as data; a line that is one field holding a tab, a comma, ... names the
  `--data_sep` that splits it.
  """
  rows = _Rows(path)
  names = list(columns) if columns is not None else None
  positions, first = None, None  # first: (line, fields, its DataError or None) without header
  for number, line in _lines(path):
    if not line:
      continue
    fields = [f.strip() for f in (line.split(sep) if sep else line.split())]
    if positions is None:
      if header:
        names = [f.lower() for f in fields]
      if names is None:
        raise DataError(f"{path}: no column names given and header=False")
      missing = [c for c in (USER, ITEM) if c not in names]
      if missing:
        raise DataError(f"{path}:{number}: missing column(s) {', '.join(missing)}; columns are "
                        f"{names}{_sep_hint(fields)}")
      positions = {c: names.index(c) for c in KNOWN_COLUMNS if c in names}
      if header:
        continue
    try:
      rows.add(fields, names, positions, integer_ids, number)
    except DataError as e:
      if header or first is not None:
        raise (first[2] if first and first[2] else e) from None
      first = (number, fields, e)  # decided at the end: a header, or this error
      continue
    if first is None and not header:
      first = (number, fields, None)
  if first is not None and first[2] is not None and not rows.users:
    raise first[2]
  log = rows.log()
  if first is not None:
    _refuse_header_as_data(path, first, positions, log)
  return log


def _sep_hint(fields):
  """'; the line is one field holding tabs: pass --data_sep=tab' when it looks split wrongly."""
  if len(fields) == 1:
    for char, what, flag in (("\t", "tabs", "tab"), (",", "commas", "comma"),
                             (";", "semicolons", "';'"), ("|", "bars", "'|'"),
                             (" ", "spaces", "whitespace")):
      if char in fields[0]:
        return f"; the line is one field holding {what}: pass --data_sep={flag}"
  return ""


def _is_number(token):
  try:
    float(token)
    return True
  except ValueError:
    return False


def _refuse_header_as_data(path, first, positions, log):
  """Raises when the first row's ids are not numbers while every other row's are; else raises
  the first row's own error, if it had one."""
  number, fields, error = first
  ids = [fields[p] for p in (positions[USER], positions[ITEM]) if p < len(fields)]
  skip = 0 if error else 1  # the first row is in `log` when it parsed
  rest = (log.users[skip:], log.items[skip:])
  if (len(rest[0]) and not all(_is_number(t) for t in ids)
      and all(np.char.isdigit(np.char.lstrip(a, "-")).all() for a in rest)):
    raise DataError(f"{path}:{number}: looks like a header ({', '.join(fields)}), not data: "
                    "pass --data_header")
  if error:
    raise error


class _Rows:
  """The columns of a delimited file as they are read."""

  def __init__(self, path):
    self.path = path
    self.users, self.items, self.ratings, self.timestamps = [], [], [], []

  def add(self, fields, names, positions, integer_ids, number):
    path = self.path
    if len(fields) != len(names):
      raise DataError(f"{path}:{number}: expected {len(names)} fields ({', '.join(names)}), got "
                      f"{len(fields)}{_sep_hint(fields)}")
    user, item = fields[positions[USER]], fields[positions[ITEM]]
    if integer_ids:
      user = str(_int(user, path, number, "user id"))
      item = str(_int(item, path, number, "item id"))
    rating = (_float(fields[positions[RATING]], path, number, RATING)
              if RATING in positions else None)
    stamp = (_float(fields[positions[TIMESTAMP]], path, number, TIMESTAMP)
             if TIMESTAMP in positions else None)
    self.users.append(user)
    self.items.append(item)
    if rating is not None:
      self.ratings.append(rating)
    if stamp is not None:
      self.timestamps.append(stamp)

  def log(self):
    if not self.users:
      raise DataError(f"{self.path}: no interaction records after the header")
    return RawLog(
        np.asarray(self.users, dtype=str),
        np.asarray(self.items, dtype=str),
        np.asarray(self.ratings, dtype=np.float64) if self.ratings else None,
        np.asarray(self.timestamps, dtype=np.float64) if self.timestamps else None,
        source=os.fspath(self.path),
    )


def read_movielens(path) -> RawLog:
  """MovieLens `u.data`: tab-separated user, item, rating, timestamp; no header."""
  return read_delimited(path, columns=(USER, ITEM, RATING, TIMESTAMP), sep="\t")


def read_indexed_pairs(path, num_users: Optional[int] = None, num_items: Optional[int] = None):
  """A pre-split file of 0-based (user, item) ids with a `user<TAB>item` header.

  Returns int64 arrays (users, items, line_numbers). Ids at or beyond `num_users`/`num_items`
  (when given) are refused with the file and line.
  """
  users, items, lines = [], [], []
  positions = None
  for number, line in _lines(path):
    if not line:
      continue
    fields = line.split("\t") if "\t" in line else line.split()
    if positions is None:
      names = [f.strip().lower() for f in fields]
      missing = [c for c in (USER, ITEM) if c not in names]
      if missing:
        raise DataError(
            f"{path}:{number}: missing column(s) {', '.join(missing)} in header {names}")
      positions = (names.index(USER), names.index(ITEM), len(names))
      continue
    if len(fields) != positions[2]:
      raise DataError(f"{path}:{number}: expected {positions[2]} fields, got {len(fields)}")
    u = _int(fields[positions[0]].strip(), path, number, "user id")
    i = _int(fields[positions[1]].strip(), path, number, "item id")
    if num_users is not None and u >= num_users:
      raise DataError(f"{path}:{number}: user id {u} outside the catalog of {num_users} users")
    if num_items is not None and i >= num_items:
      raise DataError(f"{path}:{number}: item id {i} outside the catalog of {num_items} items")
    users.append(u)
    items.append(i)
    lines.append(number)
  if not users:
    raise DataError(f"{path}: no interaction records after the header")
  return (np.asarray(users, np.int64), np.asarray(items, np.int64), np.asarray(lines, np.int64))
