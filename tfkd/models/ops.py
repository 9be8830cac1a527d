"""Shared scoring ops of the models.

`csr_rows(row_splits, values, rows)`: the entries of some rows of a CSR matrix held in tensors
(each user's training items: CDAE's input, the seen items an export excludes), as (row index in
the batch, value) pairs.

`row_dot(rows, cols)`: the scores of a few gathered columns per row.

`gather_dot(rows, table, cols)`: out[b, n] = <rows[b], table[cols[b, n]]>, the scores of many
columns per row (a distillation list: 80-160 items for each of ~900 users of a batch). Autodiff of
`einsum(rows, gather(table, cols))` sends the table's gradient as `IndexedSlices` that the
optimizer scatters row by row (`UnsortedSegmentSum`); here the table's gradient is one sparse x
dense product (the [columns x rows] matrix of upstream gradients times `rows`), dense in shape:
forward + backward about 2.5x faster (docs/speed.md). Use it for long lists only: short lists (a
BPR triple) keep the sparse gradient, so LazyAdam can update only the batch's rows. Under XLA
(`tfkd.xla`), which has no sparse ops, the same dense gradient is one scatter-add.

`distinct(rows)` and `first_of_run(rows)`: a batch's distinct users (items), each listed once, or
under XLA (static shapes) all of them sorted with their repeats weighted 0.
"""

import tensorflow as tf

from tfkd import xla

LONG_LIST = 16  # columns per row from which `gather_dot` pays off


def row_dot(rows, cols):
  """rows [B, D], cols [B, N, D] -> [B, N]: <rows[b], cols[b, n]>. For short lists (a BPR triple)
  a broadcast product and a sum, faster forward and backward than `einsum("bd,bnd->bn")`, which
  runs as a batched matmul of [N, D] x [D, 1] blocks; long lists keep the einsum, faster there
  (timings: docs/speed.md)."""
  if is_long(cols[..., 0]):
    return tf.einsum("bd,bnd->bn", rows, cols)
  return tf.reduce_sum(rows[:, None, :] * cols, axis=-1)


def gather_dot(rows, table, cols):
  """rows float [B, D], table float [T, D], cols int [B, N] -> [B, N]."""
  cols = tf.cast(cols, tf.int32)
  compiled = xla.in_xla()

  @tf.custom_gradient
  def op(rows, table):
    picked = tf.gather(table, cols)  # [B, N, D]
    scores = tf.linalg.matvec(picked, rows)

    def grad(upstream):
      d_rows = tf.linalg.matvec(picked, upstream, transpose_a=True)
      if compiled:  # no sparse ops under XLA: the same dense gradient as one scatter-add
        pieces = tf.reshape(upstream[:, :, None] * rows[:, None, :], [-1, tf.shape(rows)[1]])
        return d_rows, tf.math.unsorted_segment_sum(pieces, tf.reshape(cols, [-1]),
                                                    tf.shape(table)[0])
      shape = tf.shape(cols, out_type=tf.int64)
      index = tf.stack([tf.reshape(tf.cast(cols, tf.int64), [-1]),
                        tf.repeat(tf.range(shape[0]), shape[1])], axis=1)
      by_col = tf.SparseTensor(index, tf.reshape(upstream, [-1]),
                               tf.stack([tf.shape(table, out_type=tf.int64)[0], shape[0]]))
      return d_rows, tf.sparse.sparse_dense_matmul(by_col, rows)

    return scores, grad

  # Read variables here, outside the custom gradient, so the tape sees them as plain inputs.
  return op(tf.convert_to_tensor(rows), tf.convert_to_tensor(table))


def distinct(rows):
  """int [B] -> int32 [R]: each distinct value of `rows` once (`tf.unique`, first-seen order);
  under XLA, whose shapes are static, all B values sorted (each value's repeats adjacent, so
  `first_of_run` marks one of each)."""
  rows = tf.cast(rows, tf.int32)
  return tf.sort(rows) if xla.in_xla() else tf.unique(rows).y


def first_of_run(rows):
  """int [R] -> float32 [R]: 1 where rows[r] differs from rows[r - 1] (always at r = 0), else 0.
  On `distinct`'s output: 1 for each distinct value once, 0 for its repeats (all ones after
  `tf.unique`)."""
  rows = tf.convert_to_tensor(rows)
  return tf.cast(tf.concat([tf.ones_like(rows[:1], tf.bool), rows[1:] != rows[:-1]], 0),
                 tf.float32)


def is_long(cols):
  width = cols.shape[-1]
  return width is not None and width >= LONG_LIST


def csr_rows(row_splits, values, rows):
  """row_splits int64 [R + 1], values [nnz], rows int [B] -> (batch_row int64 [n], value [n]):
  every entry of the B rows, in order."""
  rows = tf.cast(rows, tf.int64)
  positions = tf.ragged.range(tf.gather(row_splits, rows), tf.gather(row_splits, rows + 1))
  return tf.cast(positions.value_rowids(), tf.int64), tf.gather(values, positions.flat_values)
