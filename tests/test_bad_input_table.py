"""Runs every row of docs/bad_input.md: the row's input files written into a fresh directory,
its command run in-process; the last line of stderr must be the row's message exactly, the exit
status the row's, and neither the work directory nor the cache may hold anything new (rows that
stop after the data step may leave the complete prepared dataset in the cache)."""

import os
import re
import shlex
import shutil

import pytest
from absl import flags
from absl.testing import flagsaver

from conftest import REPO
from tfkd.data import Dataset, inspect
from tfkd.data import flags as data_flags
from trainers import distill, train

TABLE = os.path.join(REPO, "docs", "bad_input.md")
ENTRY_POINTS = {"trainers.train": train, "trainers.distill": distill, "tfkd.data.inspect": inspect}
STAGES = ("flags", "data", "teacher", "method")
FILE = re.compile(r"`([^`]+)`: (?:`([^`]*)`|(a copy of `<teacher>`))$")


def _code(cell):
  return cell[1:-1] if cell.startswith("`") and cell.endswith("`") else cell


def read_table(path=TABLE):
  """{class: (input, command, stage, message, exit)} of every table row of `path`."""
  rows = {}
  with open(path) as f:
    for line in f:
      if not line.startswith("| ") or line.startswith("| class"):
        continue
      cells = [c.strip() for c in line.strip()[1:-1].split("|")]
      assert len(cells) == 6, f"a row of {len(cells)} cells (a '|' in a cell?): {line}"
      name, files, command, stage, message, exit_ = cells
      assert name not in rows, f"two rows named {name!r}"
      assert stage in STAGES, (name, stage)
      rows[name] = (files, _code(command), stage, _code(message), int(exit_))
  return rows


ROWS = read_table()


def test_the_table_has_every_class():
  assert len(ROWS) >= 25
  for words in ("header", "separator", "missing file", "malformed", "count mismatch",
                "unknown id", "training item", "same validation", "user without",
                "item without", "teacher of another dataset", "a file flag"):
    assert any(words in name for name in ROWS), words


def write_inputs(cell, root, teacher):
  for item in filter(None, (part.strip() for part in cell.split("<br>"))):
    match = FILE.match(item)
    assert match, f"cannot read the input {item!r}"
    path = os.path.join(root, match.group(1))
    if match.group(3):
      shutil.copytree(teacher, path)
      continue
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
      f.write(match.group(2).replace("\\n", "\n").replace("\\t", "\t"))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
  """The table's `<teacher>`, trained with its own cache."""
  root = tmp_path_factory.mktemp("teacher")
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("TFKD_CACHE_DIR", str(root / "cache"))
    with flagsaver.flagsaver(dataset="synthetic", num_candidates=20, epochs=1, dim=4,
                             workdir=str(root / "teacher"), verbose=0):
      train.main(["train"])
  return str(root / "teacher")


def _files(root):
  return {os.path.join(d, f) for d, _, names in os.walk(root) for f in names}


def _run(module, args):
  with flagsaver.flagsaver():
    if module is inspect:  # no --workdir: parsed apart from the trainers' required one
      fv = flags.FlagValues()
      data_flags.define_data_flags(fv)
      fv(["inspect", *args])
      with pytest.raises(SystemExit) as exit_:
        inspect.run(fv)
    else:
      flags.FLAGS(["prog", *args])
      with pytest.raises(SystemExit) as exit_:
        module.main(["prog"])
  return exit_.value.code


@pytest.mark.parametrize("name", sorted(ROWS))
def test_bad_input_row(name, tmp_path, capsys, teacher):
  files, command, stage, message, exit_ = ROWS[name]
  root = str(tmp_path / "dir")
  os.makedirs(root)
  write_inputs(files, root, teacher)
  words = shlex.split(command.replace("<dir>", root).replace("<teacher>", teacher))
  assert words[:2] == ["python", "-m"], command
  cache = str(tmp_path / "cache")
  before = _files(cache)
  capsys.readouterr()
  code = _run(ENTRY_POINTS[words[2]], words[3:])
  assert code == exit_ and code != 0
  last = capsys.readouterr().err.strip().splitlines()[-1]
  pattern = re.escape(message.replace("<dir>", root).replace("<teacher>", teacher))
  assert re.fullmatch(pattern.replace(re.escape("<key>"), "[0-9a-f]{16}"), last), last
  workdir = os.path.join(root, "out")
  assert not os.path.exists(workdir) or not os.listdir(workdir), os.listdir(workdir)
  added = _files(cache) - before
  if stage in ("flags", "data"):
    assert not added, added
  for path in added:  # only complete prepared datasets
    assert path.endswith(".npz") and "/prepared/" in path and Dataset.load(path), path
