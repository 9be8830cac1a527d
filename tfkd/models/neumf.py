"""NeuMF: He et al., "Neural Collaborative Filtering", WWW 2017.

score(u, i) = w_g . (p_u * q_i) + w_m . MLP([p'_u ; q'_i]) + b, with separate GMF embeddings
(p, q) and MLP embeddings (p', q'), and an MLP of ReLU layers `hidden` (default one layer of
`dim` units: the DCD paper's sizes, 12.24M parameters at dim 200 on CiteULike, 1.22M at dim 20).

Loss per (u, i, j_1..j_k) row, i observed and j_k unobserved items drawn uniformly:
  "bce" (pointwise log loss, the paper's): softplus(-s_ui) + sum_k softplus(s_uj_k), over 1 + k;
  "bpr": mean_k softplus(-(s_ui - s_uj_k));
plus `l2 * (squared norms of the batch's embedding rows)` averaged over the batch, as BPR.

Full ranking. The first MLP layer splits: W [p'_u ; q'_i] + b = (W_u p'_u) + (W_i q'_i + b), so
both parts are computed once per user and once per item (two matmuls), the GMF part is one matmul,
and only relu(a_u + c_i) and the later layers run per (user, item) pair. That part runs over
chunks of users, compiled by XLA so the [users, items, hidden] tensor is never materialised
(about 10x faster than the same chunks in plain ops: docs/speed.md).
`portable = True` (set by `tfkd.serving` while exporting) uses plain ops only, since TF-Serving
runs XLA-compiled functions only behind an experimental flag.

Pre-training (He et al., section 3.4.1). `towers="gmf"` or `"mlp"` builds one tower alone
(score w_g . (p_u * q_i) + b, or w_m . MLP([p'_u ; q'_i]) + b); `warm_start` then initialises a
full NeuMF from one of each: embeddings and MLP weights copied, output weights alpha * w_g and
(1 - alpha) * w_m, bias alpha * b_g + (1 - alpha) * b_m, so its first scores are exactly
alpha * s_GMF + (1 - alpha) * s_MLP. The paper fine-tunes that with plain SGD
(`--optimizer=sgd`), since Adam's moments are not carried over.
"""

import keras
import tensorflow as tf

from tfkd.models.base import Recommender, sampled_bpr_loss, sampled_log_loss
from tfkd.models.lists import ListScoring

LOSSES = ("bce", "bpr")
TOWERS = ("both", "gmf", "mlp")
_PAIR_ELEMENTS_PER_CHUNK = 1 << 24  # per-pair activations kept live in one chunk (plain ops)


def _cross(a, c, layers, w_mlp):
  """a [B, h1], c [M, h1] -> [B, M]: w_mlp . MLP(relu(a_b + c_m)) for every (b, m)."""
  h = tf.nn.relu(a[:, None, :] + c[None, :, :])
  for kernel, bias in layers:
    h = tf.nn.relu(tf.einsum("bmh,hk->bmk", h, kernel) + bias)
  return tf.einsum("bmh,h->bm", h, w_mlp)


def _chunked_cross(a, c, layers, w_mlp, chunk, shrink=False):
  """`_cross` over chunks of `chunk` rows of a (padded), so memory stays bounded.

  `shrink` lowers the chunk to the number of rows when there are fewer (a dynamic shape, so not
  under XLA): a one-user request then costs one user's pairs, not a padded chunk's.
  """
  n = tf.shape(a)[0]
  pad = (-n) % chunk
  if shrink:  # at least one chunk: map_fn cannot stack zero results of an unknown shape
    chunk = tf.maximum(tf.minimum(chunk, n), 1)
    pad = (-n) % chunk + tf.cast(tf.equal(n, 0), tf.int32)
  padded = tf.pad(a, [[0, pad], [0, 0]])
  parts = tf.map_fn(lambda x: _cross(x, c, layers, w_mlp),
                    tf.reshape(padded, [-1, chunk, tf.shape(a)[1]]),
                    fn_output_signature=tf.TensorSpec([None if shrink else chunk, None],
                                                      a.dtype))
  return tf.reshape(parts, [-1, tf.shape(c)[0]])[:n]


_chunked_cross_xla = tf.function(_chunked_cross, jit_compile=True, reduce_retracing=True)


@keras.saving.register_keras_serializable(package="tfkd")
class NeuMF(ListScoring, Recommender):
  """GMF and MLP towers fused by one output layer."""

  def __init__(self, num_users, num_items, dim=20, hidden=None, l2=0.0, loss="bce",
               num_negatives=1, init_stddev=0.01, towers="both", **kwargs):
    super().__init__(num_users, num_items, num_negatives=num_negatives, **kwargs)
    if dim <= 0:
      raise ValueError(f"dim must be positive, got {dim}")
    hidden = [int(h) for h in (hidden or [dim])]
    if min(hidden) <= 0:
      raise ValueError(f"hidden sizes must be positive, got {hidden}")
    if loss not in LOSSES:
      raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if l2 < 0:
      raise ValueError(f"l2 must be non-negative, got {l2}")
    if towers not in TOWERS:
      raise ValueError(f"towers must be one of {TOWERS}, got {towers!r}")
    self.dim, self.hidden, self.l2, self.loss = int(dim), hidden, float(l2), loss
    self.init_stddev, self.towers = float(init_stddev), towers
    self.has_gmf, self.has_mlp = towers in ("both", "gmf"), towers in ("both", "mlp")
    init = keras.initializers.RandomNormal(stddev=init_stddev)

    def embedding(n, name):
      return keras.layers.Embedding(n, dim, embeddings_initializer=init, name=name)

    # Created in the same order whatever the towers, so weight files of full NeuMFs still load.
    if self.has_gmf:
      self.user_gmf = embedding(num_users, "user_gmf")
      self.item_gmf = embedding(num_items, "item_gmf")
    self.mlp_layers = []
    if self.has_mlp:
      self.user_mlp = embedding(num_users, "user_mlp")
      self.item_mlp = embedding(num_items, "item_mlp")
      glorot = keras.initializers.GlorotUniform()
      self.w_user = self.add_weight(name="mlp_user_kernel", shape=(dim, hidden[0]),
                                    initializer=glorot)
      self.w_item = self.add_weight(name="mlp_item_kernel", shape=(dim, hidden[0]),
                                    initializer=glorot)
      self.b_first = self.add_weight(name="mlp_bias_0", shape=(hidden[0],), initializer="zeros")
      for k, (fan_in, fan_out) in enumerate(zip(hidden[:-1], hidden[1:]), start=1):
        self.mlp_layers.append((
            self.add_weight(name=f"mlp_kernel_{k}", shape=(fan_in, fan_out), initializer=glorot),
            self.add_weight(name=f"mlp_bias_{k}", shape=(fan_out,), initializer="zeros")))
    if self.has_gmf:
      self.out_gmf = self.add_weight(name="out_gmf", shape=(dim,),
                                     initializer=keras.initializers.Constant(1.0 / dim))
    if self.has_mlp:
      self.out_mlp = self.add_weight(name="out_mlp", shape=(hidden[-1],),
                                     initializer=keras.initializers.Constant(1.0 / hidden[-1]))
    self.out_bias = self.add_weight(name="out_bias", shape=(), initializer="zeros")

  # -- scoring -------------------------------------------------------------------------------

  def _deep_layers(self):
    # Tensors, not variables: the compiled function is shared by every NeuMF, and a variable
    # argument would tie its trace to one model's variables.
    return [(tf.convert_to_tensor(k), tf.convert_to_tensor(b)) for k, b in self.mlp_layers]

  def _user_part(self, users):
    """GMF vector already weighted by w_g, and the user's share of the first MLP layer (None
    for a tower the model does not have)."""
    gmf = self.user_gmf(users) * self.out_gmf if self.has_gmf else None
    mlp = tf.matmul(self.user_mlp(users), self.w_user) if self.has_mlp else None
    return gmf, mlp

  def _item_part(self, items):
    gmf = self.item_gmf(items) if self.has_gmf else None
    mlp = tf.matmul(self.item_mlp(items), self.w_item) + self.b_first if self.has_mlp else None
    return gmf, mlp

  def score(self, users, items):
    """users [B], items [B, N] -> [B, N]."""
    gu, au = self._user_part(users)
    gi, ci = self._item_part(items)  # [B, N, d], [B, N, h1]
    parts = []
    if self.has_gmf:
      parts.append(tf.einsum("bd,bnd->bn", gu, gi))
    if self.has_mlp:
      h = tf.nn.relu(au[:, None, :] + ci)
      for kernel, bias in self._deep_layers():
        h = tf.nn.relu(tf.einsum("bnh,hk->bnk", h, kernel) + bias)
      parts.append(tf.einsum("bnh,h->bn", h, self.out_mlp))
    return tf.add_n(parts) + self.out_bias

  def _all_pairs(self, g_rows, a_rows, g_all, c_all):
    """Rows of one side against every entry of the other: [B, M]."""
    others = int((g_all if self.has_gmf else c_all).shape[0])
    parts = []
    if self.has_gmf:
      parts.append(tf.matmul(g_rows, g_all, transpose_b=True))
    if self.has_mlp:
      layers, w_mlp = self._deep_layers(), tf.convert_to_tensor(self.out_mlp)
      if self.portable:
        chunk = max(1, _PAIR_ELEMENTS_PER_CHUNK // (others * max(self.hidden)))
        parts.append(_chunked_cross(a_rows, c_all, layers, w_mlp, chunk, shrink=True))
      else:
        # One-layer MLPs fuse completely under XLA; deeper ones materialise each chunk's layers.
        chunk = 32 if len(self.hidden) == 1 else max(
            1, _PAIR_ELEMENTS_PER_CHUNK // (others * max(self.hidden)))
        parts.append(_chunked_cross_xla(a_rows, c_all, layers, w_mlp, chunk))
    return tf.ensure_shape(tf.add_n(parts) + self.out_bias, [None, others])

  def score_all(self, users):
    """users [B] -> [B, num_items]."""
    gu, au = self._user_part(users)
    gi, ci = self._item_part(tf.range(self.num_items))
    return self._all_pairs(gu, au, gi, ci)

  def score_users(self, items):
    """items [B] -> [B, num_users]: the same sums with the roles of the two sides swapped."""
    gi, ci = self._item_part(items)
    gu, au = self._user_part(tf.range(self.num_users))
    return self._all_pairs(gi, ci, gu, au)

  # -- training ------------------------------------------------------------------------------

  def data_loss(self, y_pred):
    """y_pred [B, 1 + k]: the observed item's score, then k sampled negatives' scores."""
    return sampled_log_loss(y_pred) if self.loss == "bce" else sampled_bpr_loss(y_pred)

  def penalized_rows(self, users, items):
    rows = []
    if self.has_gmf:
      rows += [self.user_gmf(users), self.item_gmf(items)]
    if self.has_mlp:
      rows += [self.user_mlp(users), self.item_mlp(items)]
    return rows

  # -- pre-training ----------------------------------------------------------------------------

  def warm_start(self, pretrained, alpha=0.5):
    """Initialises this NeuMF from a GMF-only and an MLP-only NeuMF (`pretrained`: {name:
    model}, names used in errors), the output layer weighted alpha / (1 - alpha)."""
    if self.towers != "both":
      raise ValueError(f"pre-training initialises a NeuMF with both towers; this one has "
                       f"towers={self.towers!r}")
    by_tower = {}
    for name, model in pretrained.items():
      if not isinstance(model, NeuMF) or model.towers == "both":
        raise ValueError(f"{name} is not a one-tower NeuMF (trained with --towers=gmf or "
                         f"--towers=mlp)")
      if model.towers in by_tower:
        raise ValueError(f"{name} and {by_tower[model.towers][0]} are both {model.towers} "
                         f"towers; pre-training takes one GMF and one MLP")
      by_tower[model.towers] = (name, model)
    if set(by_tower) != {"gmf", "mlp"}:
      raise ValueError(f"pre-training takes one GMF and one MLP tower, got "
                       f"{', '.join(sorted(by_tower)) or 'none'}")
    (gmf_name, gmf), (mlp_name, mlp) = by_tower["gmf"], by_tower["mlp"]
    if gmf.dim != self.dim:
      raise ValueError(f"{gmf_name} has dim {gmf.dim}, this NeuMF {self.dim}")
    if (mlp.dim, mlp.hidden) != (self.dim, self.hidden):
      raise ValueError(f"{mlp_name} has dim {mlp.dim} and hidden {mlp.hidden}, this NeuMF "
                       f"{self.dim} and {self.hidden}")
    if not 0.0 <= alpha <= 1.0:
      raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    copies = [(self.user_gmf.embeddings, gmf.user_gmf.embeddings, 1.0),
              (self.item_gmf.embeddings, gmf.item_gmf.embeddings, 1.0),
              (self.out_gmf, gmf.out_gmf, alpha),
              (self.user_mlp.embeddings, mlp.user_mlp.embeddings, 1.0),
              (self.item_mlp.embeddings, mlp.item_mlp.embeddings, 1.0),
              (self.w_user, mlp.w_user, 1.0), (self.w_item, mlp.w_item, 1.0),
              (self.b_first, mlp.b_first, 1.0), (self.out_mlp, mlp.out_mlp, 1.0 - alpha)]
    for mine, theirs in zip(self.mlp_layers, mlp.mlp_layers):
      copies += [(mine[0], theirs[0], 1.0), (mine[1], theirs[1], 1.0)]
    for target, source, scale in copies:
      target.assign(scale * source.numpy())
    self.out_bias.assign(alpha * gmf.out_bias.numpy() + (1.0 - alpha) * mlp.out_bias.numpy())

  def get_config(self):
    config = super().get_config()
    config.update(dim=self.dim, hidden=list(self.hidden), l2=self.l2, loss=self.loss,
                  init_stddev=self.init_stddev, towers=self.towers)
    return config
