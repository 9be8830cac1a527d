"""The configuration of a training or distillation run: what the trainers' flags build."""

import dataclasses
from typing import Optional, Sequence

from tfkd import distribute, models, optimizers, xla
from tfkd.errors import ConfigError


@dataclasses.dataclass
class TrainConfig:
  """Everything a training run depends on (the trainers' flags map onto it one to one)."""

  workdir: str
  model: str = "bpr"
  model_config: dict = dataclasses.field(default_factory=dict)
  dataset: str = "citeulike-derrd"
  data_dir: Optional[str] = None
  dataset_kwargs: dict = dataclasses.field(default_factory=dict)  # load_dataset's spec/recipe/split
  split_seed: int = 0
  num_candidates: int = 499
  seed: int = 0
  epochs: int = 500
  batch_size: int = 1024
  learning_rate: float = 1e-3
  optimizer: str = "adam"
  eval_protocol: str = "sampled"
  eval_every: int = 5
  patience: int = 10
  early_stop_metric: str = "H@5"
  cutoffs: Sequence[int] = (5, 10)
  eval_batch_size: int = 1024
  steps_per_execution: int = 32
  jit_compile: bool = False  # XLA-compile the training step (`tfkd.xla`; BPR, RRD, DCD)
  verbose: int = 1  # 0: a line per validation; 1: Keras's progress bar; 2: a line per epoch
  deterministic: bool = False  # TF op determinism: the same seed gives the same run, bit for bit
  strategy: str = "default"  # tf.distribute strategy: default, mirrored, multi_worker
  logical_cpus: int = 0  # split the CPU into this many devices (mirrored on a CPU-only host)
  pretrained: Sequence[str] = ()  # workdirs of trained models that initialise this one
  pretrain_alpha: float = 0.5  # NeuMF pre-training: weight of the GMF tower's output layer

  def validate(self):
    for name in ("epochs", "batch_size", "eval_every", "patience", "eval_batch_size",
                 "steps_per_execution"):
      if getattr(self, name) <= 0:
        raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
    if self.learning_rate <= 0:
      raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
    if self.optimizer not in optimizers.OPTIMIZERS:
      raise ConfigError(f"optimizer must be one of {sorted(optimizers.OPTIMIZERS)}, "
                        f"got {self.optimizer!r}")
    if self.strategy not in distribute.STRATEGIES:
      raise ConfigError(f"strategy must be one of {distribute.STRATEGIES}, got {self.strategy!r}")
    if self.logical_cpus < 0:
      raise ConfigError(f"logical_cpus must be >= 0, got {self.logical_cpus}")
    if not 0.0 <= self.pretrain_alpha <= 1.0:
      raise ConfigError(f"pretrain_alpha must be in [0, 1], got {self.pretrain_alpha}")
    if self.eval_protocol not in ("sampled", "full"):
      raise ConfigError(f"eval_protocol must be 'sampled' or 'full', got {self.eval_protocol!r}")
    if self.num_candidates < 0:
      raise ConfigError(f"num_candidates must be >= 0, got {self.num_candidates}")
    if self.eval_protocol == "sampled" and self.num_candidates == 0:
      raise ConfigError("eval_protocol 'sampled' needs num_candidates > 0")
    known = {f"{k}@{n}" for k in ("H", "M", "NDCG") for n in self.cutoffs}
    if self.early_stop_metric not in known:
      raise ConfigError(f"early_stop_metric must be one of {sorted(known)}, "
                        f"got {self.early_stop_metric!r}")
    model_cls = models.get(self.model)
    if self.jit_compile:
      xla.check_model(model_cls, self.strategy)


@dataclasses.dataclass
class DistillConfig(TrainConfig):
  """A student's training plus: the teacher (trained first when `teacher_dir` holds none) and the
  distillation method with its config."""

  teacher_dir: str = ""
  teacher: Optional[TrainConfig] = None  # how to train the teacher when teacher_dir is empty
  method: str = "rrd"
  method_config: object = None
  knowledge_chunk_size: int = 1024

  def validate(self):
    super().validate()
    if self.jit_compile:  # refused before any data is read or teacher trained
      from tfkd import distill  # pylint: disable=g-import-not-at-top  (distill imports models)
      xla.check_method(distill.get(self.method)(self.method_config))
