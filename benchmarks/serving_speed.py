"""Exported size, top-N for all users, and request latency of exported models, in the session
loader TF-Serving itself uses (`tf.compat.v1.saved_model.loader.load`).

  python benchmarks/serving_speed.py \
      --workdirs=student=workdirs/bpr_student,teacher=workdirs/bpr_teacher

For each `name=workdir`: exports the model (`export.saved_model.run`, top 50) into a temporary
directory, loads it, and reports
  - the export's size on disk;
  - top-N for every user of the catalog through `serving_default`, batches of `--all_batch`
    users (the DCD paper's Table 1 measure: 14.90 s for its BPR student on a desktop CPU),
    median of `--repeats`;
  - single-request latency p50 / p99 for batches of 1 and 256 random users (`--requests` each,
    after a warm-up).
Prints a Markdown table. Times depend on what else runs on the machine: say so with the numbers.
"""

import json
import os
import shutil
import tempfile
import time

import numpy as np
from absl import app, flags

from export import saved_model  # defines --top_n (N of the export)

flags.DEFINE_list("workdirs", [], "name=workdir pairs of trainers.train / trainers.distill runs.")
flags.DEFINE_integer("all_batch", 1024, "Users per request when ranking all users.")
flags.DEFINE_integer("repeats", 3, "Repeats of the all-users pass (median reported).")
flags.DEFINE_integer("requests", 200, "Requests per latency measurement.")
FLAGS = flags.FLAGS


def dir_size(path):
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def measure(name, workdir, tmp):
  import tensorflow as tf

  from tfkd import training

  path, _ = saved_model.run(workdir, os.path.join(tmp, name), top_n=FLAGS.top_n)
  with open(os.path.join(workdir, training.MODEL_FILE)) as f:
    meta = json.load(f)
  num_users = meta["num_users"]
  row = {"model": f"{name} ({meta['model']}, dim {meta['config'].get('dim', '?')})",
         "size_mb": dir_size(path) / 2**20}
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    sig = tf.compat.v1.saved_model.loader.load(session, ["serve"], path).signature_def[
        "serving_default"]
    fetch = {k: v.name for k, v in sig.outputs.items()}
    feed = sig.inputs["user_id"].name

    def call(users):
      return session.run(fetch, {feed: users})

    call(np.arange(min(256, num_users), dtype=np.int64))  # warm-up
    all_users = np.arange(num_users, dtype=np.int64)
    times = []
    for _ in range(FLAGS.repeats):
      start = time.perf_counter()
      for b in range(0, num_users, FLAGS.all_batch):
        call(all_users[b:b + FLAGS.all_batch])
      times.append(time.perf_counter() - start)
    row["all_users_s"] = float(np.median(times))
    rng = np.random.default_rng(0)
    for batch in (1, 256):
      lat = []
      for _ in range(10):
        call(rng.integers(0, num_users, batch))
      for _ in range(FLAGS.requests):
        users = rng.integers(0, num_users, batch)
        start = time.perf_counter()
        call(users)
        lat.append(time.perf_counter() - start)
      row[f"p50_{batch}"] = 1e3 * np.percentile(lat, 50)
      row[f"p99_{batch}"] = 1e3 * np.percentile(lat, 99)
  row["num_users"] = num_users
  return row


def main(argv):
  del argv
  if not FLAGS.workdirs:
    raise app.UsageError("--workdirs=name=workdir,... is required")
  tmp = tempfile.mkdtemp(prefix="tfkd-serving-")
  rows = []
  try:
    for pair in FLAGS.workdirs:
      name, _, workdir = pair.partition("=")
      if not workdir:
        raise app.UsageError(f"--workdirs entries are name=workdir, got {pair!r}")
      rows.append(measure(name, workdir, tmp))
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  print(f"| model | export size | top-{FLAGS.top_n} for all users | 1 user p50 / p99 | "
        "256 users p50 / p99 |")
  print("|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['model']} | {r['size_mb']:.1f} MB | {r['all_users_s']:.2f} s "
          f"({r['num_users']} users) | {r['p50_1']:.2f} / {r['p99_1']:.2f} ms | "
          f"{r['p50_256']:.1f} / {r['p99_256']:.1f} ms |")


if __name__ == "__main__":
  app.run(main)
