"""Time to rank every item for every user with a trained run's model (the DCD paper's Table 1), as
`python -m benchmarks.reproduce --experiment=speed` runs it:

  python -m benchmarks.reproduce_rank_time --model_dir=runs/shared/bpr_teacher/seed0 \
      --workdir=runs/speed/rank_time_bpr_teacher/seed0

Builds the model of `<model_dir>/model.json` (its name, config and catalog size) and times
`score_all` plus the top `--top_n` over all users in batches of `--batch` users, the median of
`--repeats` passes after a warm-up pass, as benchmarks/full_ranking.py does. The weights are
random: the time does not depend on their values (models that score from the data they were
trained on, CDAE and Caser, cannot be built this way). Writes `<workdir>/metrics.json`:
{"rank_seconds", "pass_seconds", "num_users", "num_items", "num_parameters", "model"}.
"""

import json
import os
import statistics
import time

from absl import app, flags


def define_flags(fv):
  d = dict(flag_values=fv)
  flags.DEFINE_string("model_dir", None, "Work directory of the trained run (its model.json).", **d)
  flags.DEFINE_string("workdir", None, "Where metrics.json goes.", **d)
  flags.DEFINE_integer("seed", 0, "Seed of the random weights.", **d)
  flags.DEFINE_integer("batch", 1024, "Users per score_all call.", lower_bound=1, **d)
  flags.DEFINE_integer("repeats", 3, "Timed passes (the median is reported).", lower_bound=1, **d)
  flags.DEFINE_integer("top_n", 50, "N of the top-N taken from each user's scores.",
                       lower_bound=1, **d)


def time_ranking(model, num_users, batch=1024, top_n=50, repeats=3):
  """Seconds of each of `repeats` passes over every user (after one untimed warm-up pass)."""
  import tensorflow as tf

  @tf.function
  def rank(users):
    return tf.math.top_k(model.score_all(users), k=top_n).indices

  def one_pass():
    for b in range(0, num_users, batch):
      rank(tf.range(b, min(b + batch, num_users))).numpy()

  one_pass()  # traces both batch shapes
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    one_pass()
    times.append(time.perf_counter() - start)
  return times


def measure(model_dir, seed=0, batch=1024, top_n=50, repeats=3):
  import keras
  from tfkd import models
  with open(os.path.join(model_dir, "model.json")) as f:
    meta = json.load(f)
  keras.utils.set_random_seed(seed)
  model = models.build(meta["model"], meta["num_users"], meta["num_items"], **meta["config"])
  times = time_ranking(model, meta["num_users"], batch, min(top_n, meta["num_items"]), repeats)
  return {"rank_seconds": round(statistics.median(times), 4),
          "pass_seconds": [round(t, 4) for t in times], "num_users": meta["num_users"],
          "num_items": meta["num_items"], "num_parameters": int(model.count_params()),
          "model": meta["model"], "batch": batch, "top_n": top_n}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  fv = flags.FLAGS
  if not fv.model_dir or not fv.workdir:
    raise app.UsageError("--model_dir and --workdir are required")
  metrics = measure(fv.model_dir, fv.seed, fv.batch, fv.top_n, fv.repeats)
  os.makedirs(fv.workdir, exist_ok=True)
  path = os.path.join(fv.workdir, "metrics.json")
  with open(path + ".tmp", "w") as f:
    json.dump(metrics, f, indent=2)
  os.replace(path + ".tmp", path)
  print(f"ranked {metrics['num_users']} users x {metrics['num_items']} items in "
        f"{metrics['rank_seconds']:.3f} s (median of {fv.repeats}); wrote {path}")


if __name__ == "__main__":
  from tfkd import console
  console.import_tensorflow_quietly()
  define_flags(flags.FLAGS)
  app.run(main)
