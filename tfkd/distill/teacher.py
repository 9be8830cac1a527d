"""Teacher knowledge: the teacher's top-K unobserved items per user and top-K users per item.

Computed in chunks of users, so memory is O(chunk x num_items + num_items x K) whatever the
catalog size: for the item side a running top-K per item is merged chunk by chunk. Stored as
`.npz` with its metadata (teacher weights' md5, dataset key, K) in the teacher's work directory,
and reused while those match.
"""

import hashlib
import json
import os

import numpy as np
import tensorflow as tf

from tfkd import io
from tfkd.errors import ConfigError

_NEG = -np.inf


def _observed_rows(dataset, users):
  indptr, indices = dataset.train_csr()
  counts = np.diff(indptr)[users]
  rows = np.repeat(np.arange(len(users)), counts)
  cols = np.concatenate([indices[indptr[u]:indptr[u + 1]] for u in users]) if len(users) else []
  return rows.astype(np.int32), np.asarray(cols, np.int32)


@tf.function(reduce_retracing=True)
def _masked_scores(model, users, rows, cols):
  scores = model.score_all(users)
  updates = tf.fill(tf.shape(rows), tf.constant(_NEG, scores.dtype))
  return tf.tensor_scatter_nd_update(scores, tf.stack([rows, cols], axis=1), updates)


def masked_score_chunks(model, dataset, chunk_size=1024):
  """Yields (users, scores [B, num_items]) with each user's training items at -inf."""
  for start in range(0, dataset.num_users, chunk_size):
    users = np.arange(start, min(start + chunk_size, dataset.num_users), dtype=np.int32)
    rows, cols = _observed_rows(dataset, users)
    yield users, _masked_scores(model, tf.constant(users), tf.constant(rows), tf.constant(cols))


def user_topk(model, dataset, k, chunk_size=1024):
  """int32 [num_users, k]: each user's top-k unobserved items, best first."""
  _check_k(k, dataset.num_items, "user-side K", "items")
  out = np.empty((dataset.num_users, k), np.int32)
  for users, scores in masked_score_chunks(model, dataset, chunk_size):
    out[users] = tf.math.top_k(scores, k=k).indices.numpy()
  return out


def item_topk(model, dataset, k, chunk_size=1024):
  """int32 [num_items, k]: each item's top-k users among those who did not interact with it."""
  _check_k(k, dataset.num_users, "item-side K", "users")
  best_scores = tf.fill([dataset.num_items, k], tf.constant(_NEG, tf.float32))
  best_users = tf.zeros([dataset.num_items, k], tf.int32)
  for users, scores in masked_score_chunks(model, dataset, chunk_size):
    best_scores, best_users = _merge(best_scores, best_users, tf.transpose(scores),
                                     tf.constant(users), k)
  return best_users.numpy()


@tf.function(reduce_retracing=True)
def _merge(best_scores, best_users, chunk_scores, chunk_users, k):
  scores = tf.concat([best_scores, chunk_scores], axis=1)
  ids = tf.concat([best_users, tf.broadcast_to(chunk_users[None, :], tf.shape(chunk_scores))], 1)
  top = tf.math.top_k(scores, k=k)
  return top.values, tf.gather(ids, top.indices, batch_dims=1)


def _check_k(k, size, what, unit):
  if k <= 0 or k > size:
    raise ConfigError(f"{what}={k} must be between 1 and the catalog's {size} {unit}")




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
  user = user_topk(teacher, dataset, user_k, chunk_size)
  item = item_topk(teacher, dataset, item_k, chunk_size) if item_k else np.zeros((0, 0), np.int32)
  with io.atomic_path(path) as tmp:
    np.savez(tmp, user_topk=user, item_topk=item, meta=json.dumps(meta, sort_keys=True))
  return {"user_topk": user, "item_topk": item if item_k else None}
