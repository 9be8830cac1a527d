"""Time to score and rank every item for every user (the DCD paper's Table 1 measure).

  python benchmarks/full_ranking.py --models=neumf:200,neumf:20,bpr:200,bpr:20

For each `model:dim`, builds the model at the CiteULike catalog size (5,219 users x 25,181 items;
weights random: the time does not depend on them) and times `score_all` plus the top-50 over all
users in batches of `--batch` users, median of `--repeats` passes after a warm-up pass (which
also compiles NeuMF's XLA kernel). Prints the multiply-adds each pass needs and the rate
achieved, so the distance to the machine's floor is visible; the paper's CPU figures are
NeuMF 261.37 s (teacher) / 33.75 s (student), BPR 14.90 s (student) on a desktop CPU.
"""

import time

import numpy as np
from absl import app, flags

flags.DEFINE_list("models", ["neumf:200", "neumf:20", "bpr:200", "bpr:20"], "model:dim pairs.")
flags.DEFINE_integer("num_users", 5219, "Users (CiteULike).")
flags.DEFINE_integer("num_items", 25181, "Items (CiteULike).")
flags.DEFINE_integer("batch", 1024, "Users per score_all call.")
flags.DEFINE_integer("repeats", 3, "Timed passes.")
flags.DEFINE_integer("top_n", 50, "N of the top-N taken from each user's scores.")
FLAGS = flags.FLAGS

PAPER = {("neumf", 200): 261.37, ("neumf", 20): 33.75, ("bpr", 20): 14.90}


def multiply_adds(name, dim, users, items):
  """Multiply-adds of one full pass (the dominant terms)."""
  if name == "bpr":
    return users * items * dim
  # NeuMF, one hidden layer of dim units: GMF dot (dim), the per-pair add + relu + output dot
  # (dim), and the per-side halves of the first layer (users + items) * dim * dim.
  return users * items * 2 * dim + (users + items) * dim * dim


def main(argv):
  del argv
  import tensorflow as tf

  from tfkd import models

  users, items = FLAGS.num_users, FLAGS.num_items
  print(f"| model | all {users} users x {items} items | multiply-adds | rate | paper (CPU) |")
  print("|---|---|---|---|---|")
  for spec in FLAGS.models:
    name, dim = spec.split(":")
    dim = int(dim)
    model = models.build(name, users, items, dim=dim)

    @tf.function
    def rank(batch):
      return tf.math.top_k(model.score_all(batch), k=FLAGS.top_n).indices

    def one_pass():
      for b in range(0, users, FLAGS.batch):
        rank(tf.range(b, min(b + FLAGS.batch, users))).numpy()

    one_pass()  # traces and compiles both batch shapes
    times = []
    for _ in range(FLAGS.repeats):
      start = time.perf_counter()
      one_pass()
      times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    macs = multiply_adds(name, dim, users, items)
    paper = PAPER.get((name, dim))
    print(f"| {name} dim {dim} | {seconds:.2f} s | {macs / 1e9:.1f} G | "
          f"{macs / seconds / 1e9:.1f} G/s | {f'{paper:.2f} s' if paper else '-'} |",
          flush=True)


if __name__ == "__main__":
  app.run(main)
