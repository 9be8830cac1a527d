"""`--dataset=presplit`: the user's own train / validation / test files, of any sizes, ids as
strings or ints, checked, trained on and evaluated; and a catalog split's sizes as a check."""

import os

import numpy as np
import pytest
from absl.testing import flagsaver

from conftest import read_metrics
from tfkd.data import catalog, load_dataset
from tfkd.errors import DataError


def write_split(root, num_users=40, num_items=70, seed=0, prefix=("u", "i"), header=True,
                sep=","):
  """Three files: every user 6 training items; users 0..29 a validation item, users 5..39 a
  test item (sizes all differ); ids `<prefix><n>`, users listed in a shuffled order."""
  rng = np.random.default_rng(seed)
  rows = {"train": [], "valid": [], "test": []}
  for u in rng.permutation(num_users):
    items = rng.choice(num_items - 5, 8, replace=False)  # items >= num_items - 5: never used
    rows["train"] += [(u, i) for i in items[:6]]
    if u < 30:
      rows["valid"].append((u, items[6]))
    if u >= 5:
      rows["test"].append((u, items[7]))
  paths = {}
  for name, pairs in rows.items():
    path = os.path.join(root, f"{name}.csv")
    with open(path, "w") as f:
      f.write(f"user{sep}item\n" if header else "")
      f.writelines(f"{prefix[0]}{u}{sep}{prefix[1]}{i}\n" for u, i in pairs)
    paths[name] = path
  return paths, rows


def spec(paths, **options):
  return catalog.presplit_spec(paths["train"], paths["valid"], paths["test"], **options)


def test_raw_ids_are_indexed_train_first_and_kept(tmp_path):
  paths, rows = write_split(str(tmp_path))
  d = load_dataset("presplit", spec=spec(paths, header=True), num_candidates=10, accept=(
      "unseen_item",))
  users = list(dict.fromkeys(f"u{u}" for u, _ in rows["train"] + rows["valid"] + rows["test"]))
  items = list(dict.fromkeys(f"i{i}" for _, i in rows["train"] + rows["valid"] + rows["test"]))
  assert d.user_raw_ids.tolist() == users and d.item_raw_ids.tolist() == items
  assert (d.num_users, d.num_items, d.num_train) == (40, len(items), 240)
  got = {(d.user_raw_ids[u], d.item_raw_ids[i]) for u, i in zip(d.train_users, d.train_items)}
  assert got == {(f"u{u}", f"i{i}") for u, i in rows["train"]}
  for split in ("valid", "test"):
    held = d.heldout_items(split)
    assert {(d.user_raw_ids[u], d.item_raw_ids[held[u]]) for u in np.flatnonzero(held >= 0)} \
        == {(f"u{u}", f"i{i}") for u, i in rows[split]}
  assert (d.valid_items >= 0).sum() == 30 and (d.test_items >= 0).sum() == 35


def test_integer_ids_without_header_and_tab(tmp_path):
  paths, rows = write_split(str(tmp_path), prefix=("", ""), header=False, sep="\t")
  d = load_dataset("presplit", spec=spec(paths, columns=("user", "item"), sep="\t"),
                   num_candidates=5, accept=("unseen_item",))
  assert d.user_raw_ids[0] == str(rows["train"][0][0]) and d.num_train == 240


def test_training_order_follows_timestamps_and_repeats_count_once(tmp_path):
  (tmp_path / "train.csv").write_text("a,x,3\na,y,1\na,z,2\na,y,5\nb,x,1\nb,z,2\n")
  (tmp_path / "valid.csv").write_text("a,w,9\n")
  (tmp_path / "test.csv").write_text("b,y,9\n")
  paths = {n: str(tmp_path / f"{n}.csv") for n in ("train", "valid", "test")}
  d = load_dataset("presplit", spec=spec(paths, columns=("user", "item", "timestamp")),
                   num_candidates=0, accept=("unseen_item",))
  a = np.flatnonzero(d.user_raw_ids == "a")[0]
  assert d.item_raw_ids[d.train_items[d.train_users == a]].tolist() == ["y", "z", "x"]


def test_checks_run_on_a_cached_split_too(tmp_path):
  paths, _ = write_split(str(tmp_path))
  with open(paths["valid"], "a") as f:
    f.write("u35,i65\n")  # a user without a validation row, an item nobody has
  accepted = load_dataset("presplit", spec=spec(paths, header=True), num_candidates=5,
                          accept=("unseen_item",))
  cached = list((tmp_path / "cache" / "prepared").glob("presplit-*.npz"))
  assert len(cached) == 1 and accepted.num_users == 40
  with pytest.raises(DataError, match=r"held-out rows of items without training rows"):
    load_dataset("presplit", spec=spec(paths, header=True), num_candidates=5)


def test_a_smaller_split_in_the_catalog_layout_is_refused(tmp_path):
  root = tmp_path / "data" / "citeulike" / "derrd_loo"
  root.mkdir(parents=True)
  for name, text in (("train", "0\t0\n0\t1\n1\t0\n1\t2\n"), ("valid", "0\t2\n1\t1\n"),
                     ("test", "0\t3\n1\t3\n")):
    (root / f"{name}.tsv").write_text("user\titem\n" + text)
  with pytest.raises(DataError, match=r"hold 2 users, 4 items, 8 interactions; expected the "
                                      r"catalog's 5219, 25181, 125580"):
    load_dataset("citeulike-derrd", data_dir=str(tmp_path / "data"), num_candidates=0)
  assert not list(tmp_path.rglob("*.npz"))


def test_presplit_trains_and_evaluates(tmp_path):
  from trainers import train
  paths, _ = write_split(str(tmp_path))
  workdir = str(tmp_path / "out")
  with flagsaver.flagsaver(dataset="presplit", train_file=paths["train"],
                           valid_file=paths["valid"], test_file=paths["test"], data_header=True,
                           allow_cold=True, num_candidates=20, epochs=2, eval_every=1, dim=4,
                           verbose=0, workdir=workdir):
    train.main(["train"])
  metrics = read_metrics(workdir)
  assert 0.0 <= metrics["test"]["H@5"] <= 1.0 and 0.0 <= metrics["test"]["NDCG@10"] <= 1.0
  flags_txt = open(os.path.join(workdir, "flags.txt")).read()
  assert f"--train_file={paths['train']}" in flags_txt and "--allow_cold" in flags_txt
