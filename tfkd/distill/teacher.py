"""Teacher knowledge: the teacher's top-K unobserved items per user and top-K users per item.

Computed in chunks of rows (users; items, scored against every user by the model's
`score_users`), each row's observed columns masked by `ranks.SideScorer`, so memory is
O(chunk x catalog + rows x K) whatever the catalog size. Stored as `.npz` with its metadata
(teacher weights' md5, dataset key, K) in the teacher's work directory, and reused while those
match.
"""

import hashlib
import json
import os

import numpy as np
import tensorflow as tf

from tfkd import io
from tfkd.distill import ranks
from tfkd.errors import ConfigError


def _side_topk(model, dataset, side, k, chunk_size):
  """int32 [num_rows, k]: each row's top-k unobserved columns, best first, in chunks of rows."""
  scorer = ranks.SideScorer(dataset, side)
  out = np.empty((scorer.num_rows, k), np.int32)
  for rows in ranks.row_chunks(scorer.num_rows, chunk_size):
    out[rows] = tf.math.top_k(scorer.scores(model, rows), k=k).indices.numpy()
  return out


def user_topk(model, dataset, k, chunk_size=1024):
  """int32 [num_users, k]: each user's top-k unobserved items, best first."""
  _check_k(k, dataset.num_items, "user-side K", "items")
  return _side_topk(model, dataset, "user", k, chunk_size)


def item_topk(model, dataset, k, chunk_size=1024):
  """int32 [num_items, k]: each item's top-k users among those who did not interact with it."""
  _check_k(k, dataset.num_users, "item-side K", "users")
  return _side_topk(model, dataset, "item", k, chunk_size)


def _check_k(k, size, what, unit):
  if k <= 0 or k > size:
    raise ConfigError(f"{what}={k} must be between 1 and the catalog's {size} {unit}")


def compute(teacher, dataset, user_k, item_k, chunk_size=1024):
  """{"user_topk": [U, user_k] or None, "item_topk": [I, item_k] or None}: the rankings a method
  reads (its `user_k` / `item_k`; a side of 0 is not computed)."""
  return {"user_topk": user_topk(teacher, dataset, user_k, chunk_size) if user_k else None,
          "item_topk": item_topk(teacher, dataset, item_k, chunk_size) if item_k else None}


def load_or_compute(teacher, teacher_dir, weights_path, dataset, user_k, item_k, chunk_size=1024):
  """Returns {"user_topk": [U, user_k], "item_topk": [I, item_k] or None}, cached in teacher_dir.

  `item_k=0` skips the item side.
  """
  meta = {"weights_md5": io.md5_file(weights_path), "dataset_key": dataset.key, "user_k": int(user_k),
          "item_k": int(item_k), "num_users": dataset.num_users, "num_items": dataset.num_items}
  name = "rankings-" + hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:12]
  path = os.path.join(teacher_dir, name + ".npz")
  if os.path.isfile(path):
    with np.load(path) as z:
      if json.loads(str(z["meta"])) == meta:
        return {"user_topk": z["user_topk"], "item_topk": z["item_topk"] if item_k else None}
  knowledge = compute(teacher, dataset, user_k, item_k, chunk_size)
  item = knowledge["item_topk"]
  with io.atomic_path(path) as tmp:
    np.savez(tmp, user_topk=knowledge["user_topk"],
             item_topk=np.zeros((0, 0), np.int32) if item is None else item,
             meta=json.dumps(meta, sort_keys=True))
  return knowledge
