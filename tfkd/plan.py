"""What a training or distillation run will do, stated before it starts.

The trainers print `describe(config)` first; `--dry_run` prints it, prepares the data (downloading
what is missing) and stops there.
"""

import os
import urllib.parse

from tfkd import training
from tfkd.data import catalog, sources


def describe(config) -> str:
  """The run's stages, one line each: data, (teacher, its rankings,) training or distillation."""
  lines = ["plan:", f"  data      {_data(config)}"]
  if isinstance(config, training.DistillConfig):
    if os.path.isfile(os.path.join(config.teacher_dir, training.MODEL_FILE)):
      lines.append(f"  teacher   load the trained teacher in {config.teacher_dir}")
    else:
      lines.append(f"  teacher   train {_training(config.teacher)} into {config.teacher_dir}")
    lines.append(f"  rankings  the teacher's top lists, computed once and cached in "
                 f"{config.teacher_dir}")
    lines.append(f"  distil    {config.method}: student {_training(config)} into "
                 f"{config.workdir}")
  else:
    lines.append(f"  train     {_training(config)} into {config.workdir}")
  lines.append("  time      each stage logs its epoch time after its first epoch, with the most "
               "its epoch cap can take")
  return "\n".join(lines)


def _training(config):
  settings = ", ".join(f"{k} {v}" for k, v in sorted(config.model_config.items()))
  return (f"{config.model}{f' ({settings})' if settings else ''}: at most {config.epochs} epochs, "
          f"validation every {config.eval_every}, stopping after {config.patience} without a "
          f"better {config.early_stop_metric}")


def _data(config):
  name = config.dataset
  spec = config.dataset_kwargs.get("spec") or catalog.CATALOG.get(name)
  if spec is None:
    return f"{name} (generated)"
  if all(os.path.isabs(f.relpath) for f in spec.files):  # the user's own files
    return f"{name}: {', '.join(f.relpath for f in spec.files)}"
  home, missing = sources.locate(spec.files, config.data_dir, name)
  if not missing:
    return f"{name}: source files in {home}"
  hosts = sorted({urllib.parse.urlsplit(sources.mirrored(f.url)).netloc or "a local mirror"
                  for f in missing if f.url})
  return (f"{name}: download {len(missing)} source file(s) from {', '.join(hosts)} into {home} "
          "(md5-checked)")
