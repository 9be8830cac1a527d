"""One table of bad inputs: each ends in a one-line error naming the input, exit status 1, and
no results left behind."""

import os

import pytest
from absl.testing import flagsaver

from trainers import distill, train

SYN = dict(dataset="synthetic", num_candidates=20, epochs=1, eval_every=1, dim=4)


def teacher_dir(tmp_path):
  """A trained synthetic teacher."""
  path = str(tmp_path / "teacher")
  with flagsaver.flagsaver(workdir=path, **SYN):
    train.main(["train"])
  return path


def bad_data_file(tmp_path):
  data = tmp_path / "r.csv"
  data.write_text("u1,i1,5,10\nu1,i2,5\n")
  return dict(dataset="file", data_file=str(data)), f"{data}:2: expected 4 fields"


def corrupt_teacher(tmp_path):
  path = teacher_dir(tmp_path)
  with open(os.path.join(path, "model.weights.h5"), "wb") as f:
    f.write(b"not an hdf5 file")
  return dict(method="rrd", teacher_dir=path, **SYN), "cannot load weights"


CASES = {
    "malformed data line": (train, bad_data_file),
    "every user filtered out": (train, lambda t: (
        dict(SYN, min_user_interactions=10 ** 6), "no interactions left after the recipe")),
    "K larger than the catalog": (distill, lambda t: (
        dict(SYN, method="rrd", teacher_dir=teacher_dir(t), rrd_top=10 ** 5, rrd_k=5),
        "must be between 1 and the catalog")),
    "impossible method setting": (distill, lambda t: (
        dict(SYN, method="cd", teacher_dir=teacher_dir(t), cd_sample_ratio=0.0,
             cd_sample_size=0), "sample_size or sample_ratio")),
    "corrupt teacher checkpoint": (distill, corrupt_teacher),
    "teacher workdir without a model, no teacher config": (distill, lambda t: (
        dict(SYN, method="rrd", teacher_dir=str(t), teacher_flagfile=str(t / "none.flags")),
        "none.flags")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_leaves_no_results(tmp_path, capsys, case):
  entry, make = CASES[case]
  flags_, expected = make(tmp_path)
  workdir = tmp_path / "out"
  capsys.readouterr()
  with flagsaver.flagsaver(workdir=str(workdir), **flags_):
    with pytest.raises(SystemExit) as exit_:
      entry.main(["prog"])
  assert exit_.value.code == 1
  lines = capsys.readouterr().err.strip().splitlines()
  assert lines and lines[-1].startswith("tfkd: error: ") and expected in lines[-1], lines[-1:]
  for name in ("metrics.json", "model.weights.h5", "checkpoint.npz"):
    assert not (workdir / name).exists()
