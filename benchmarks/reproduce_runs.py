"""The runs behind `python -m benchmarks.reproduce`: what each is, whether it ran, and running it.

A job is one run at one seed: `python -m <trainer> --flagfile=<config>... <extra flags> <flags
passed through> --seed=S --workdir=<root>/<experiment or shared>/<run>/seed<S>`, plus the work
directories of the jobs it needs (`--teacher_dir`, `--pretrained`, `--model_dir`). Its identity is
its trainer, its flags resolved (flagfiles expanded by absl as the trainer reads them, the last
value of each flag kept, flags that only locate files left out), the code commit (`CODE`: the
last commit that changed what a run executes), and the identities of the jobs it needs.
`run.json` in the work directory records it when the job starts; a job whose run.json has the
same identity and whose `metrics.json` exists is reused, one with another identity is
`mismatched` (listed, neither run nor reported, replaced with `--rerun`).
"""

import dataclasses
import datetime
import functools
import hashlib
import json
import os
import socket
import subprocess
import sys
from typing import Optional

from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_FILE, METRICS_FILE = "run.json", "metrics.json"
LOCK_FILE, LOG_FILE, CHECKPOINT_FILE = "reproduce.lock", "reproduce.log", "checkpoint.npz"
# Flags reproduce sets itself for every job (a pass-through flag may not set them).
PER_JOB = ("seed", "workdir", "teacher_dir", "pretrained", "model_dir", "method", "flagfile")
# Flags that say where things are, not what is computed: not part of a job's identity.
LOCATION = ("workdir", "teacher_dir", "pretrained", "model_dir", "data_dir", "verbose")
DONE, TODO, MISMATCHED, BLOCKED, ELSEWHERE = "reuse", "run", "mismatched", "blocked", "running"


class ReproduceError(Exception):
  """A bad input or state, told in one line."""


@dataclasses.dataclass(frozen=True)
class Run:
  """A named run: flagfiles (later ones override earlier ones) plus extra flags.

  `teacher` runs at the teacher seed and is passed as --teacher_dir; `pretrained` runs at the same
  seed, as --pretrained; `measures` (a timing job) at the teacher seed, as --model_dir. `shared`
  runs live in <root>/shared (the same run in several experiments), others in <root>/<experiment>.
  """
  name: str
  flagfiles: tuple = ()
  extra: tuple = ()
  teacher: Optional["Run"] = None
  pretrained: tuple = ()
  measures: Optional["Run"] = None
  trainer: Optional[str] = None  # default: trainers.distill when --method is set
  shared: bool = True
  every_seed: bool = True  # False: the teacher seed only
  exclusive: bool = False  # runs with nothing beside it (timings)
  passthrough: bool = True  # takes the flags passed through to the runs

  def needs(self):
    """[(flag, runs, same_seed)]: the jobs this run's jobs need."""
    out = []
    if self.teacher:
      out.append(("teacher_dir", (self.teacher,), False))
    if self.pretrained:
      out.append(("pretrained", self.pretrained, True))
    if self.measures:
      out.append(("model_dir", (self.measures,), False))
    return out


@dataclasses.dataclass(eq=False)
class Job:
  run: Run
  seed: int
  workdir: str
  label: str
  trainer: str
  args: list
  identity: dict
  key: str
  deps: list
  status: str = TODO
  note: str = ""
  clear: bool = False  # --rerun: empty the work directory first

  @property
  def command(self):
    return [sys.executable, "-m", self.trainer, *self.args]

  def path(self, name):
    return os.path.join(self.workdir, name)

  def finished(self):
    return os.path.isfile(self.path(METRICS_FILE))


def expand(args):
  """`args` with every --flagfile expanded as absl does (relative paths from the repository)."""
  here = os.getcwd()
  os.chdir(REPO)
  try:
    return flags.FlagValues().read_flags_from_files(list(args), force_gnu=True)
  except flags.Error as e:
    raise ReproduceError(str(e)) from None
  finally:
    os.chdir(here)


def flag_name(arg):
  """The flag an argument sets (a value-less --noX sets X)."""
  name = arg[2:].split("=", 1)[0]
  return name[2:] if "=" not in arg and name.startswith("no") else name


def resolve(args):
  """The last setting of each flag, sorted, without the flags that only locate files."""
  last = {flag_name(a): a for a in args if a.startswith("--")}
  return sorted(a for name, a in last.items() if name not in LOCATION)


def query_flags(modules):
  """{module: {flag name: is boolean}} of the entry points, each asked in a subprocess (they
  define their flags on import; absl's own are included)."""
  code = ("import importlib, json, sys\nfrom absl import flags\n"
          "importlib.import_module(sys.argv[1])\n"
          "print(json.dumps({n: flags.FLAGS[n].boolean for n in flags.FLAGS}))")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  procs = {m: subprocess.Popen([sys.executable, "-c", code, m], cwd=REPO, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for m in modules}
  out = {}
  for module, proc in procs.items():
    stdout, stderr = proc.communicate()
    if proc.returncode:
      last = (stderr.strip().splitlines() or ["no output"])[-1]
      raise ReproduceError(f"cannot import {module} to read its flags: {last}")
    out[module] = json.loads(stdout.strip().splitlines()[-1])
  return out


# What a run executes: a commit that changes none of these (RESULTS.md, docs, the report code)
# leaves every finished run valid, so the report can be committed beside the runs it reports.
CODE = ("tfkd", "trainers", "setup.cfg", "benchmarks/reproduce_rank_time.py")


def git_state():
  """(code commit, the code has uncommitted changes); ("unknown", False) outside git. The code
  commit is the last commit that changed a path of `CODE`."""
  def git(*args):
    return subprocess.run(["git", "--no-optional-locks", "-C", REPO, *args], text=True,
                          capture_output=True, check=True).stdout.strip()
  try:
    commit = git("log", "-1", "--format=%H", "--", *CODE) or git("rev-parse", "HEAD")
    return commit, bool(git("status", "--porcelain", "--untracked-files=no", "--", *CODE))
  except (OSError, subprocess.CalledProcessError):
    return "unknown", False


class Planner:
  """Makes the jobs of runs at seeds, each once, with their dependencies."""

  def __init__(self, root, experiment, teacher_seed, passthrough, trainer_flags, commit):
    self.root, self.experiment, self.teacher_seed = root, experiment, teacher_seed
    self.passthrough, self.trainer_flags, self.commit = passthrough, trainer_flags, commit
    self.jobs = {}

  def job(self, run, seed):
    seed = seed if run.every_seed else self.teacher_seed
    if (run.name, seed) in self.jobs:
      if self.jobs[(run.name, seed)].run != run:
        raise ReproduceError(f"two different runs are named {run.name!r}")
      return self.jobs[(run.name, seed)]
    deps, dep_args, needs = [], [], {}
    for flag, runs, same_seed in run.needs():
      got = [self.job(r, seed if same_seed else self.teacher_seed) for r in runs]
      deps += got
      dep_args.append(f"--{flag}={','.join(j.workdir for j in got)}")
      needs[flag] = [j.key for j in got]
    base = [*(f"--flagfile={f}" for f in run.flagfiles), *run.extra]
    trainer = run.trainer or ("trainers.distill" if any(a.startswith("--method=")
                                                         for a in expand(base))
                              else "trainers.train")
    method = _method(expand(base)) if trainer == "trainers.distill" else None
    passed = ([a for a in self.passthrough if self._accepts(trainer, a, method)]
              if run.passthrough else [])
    group = "shared" if run.shared else self.experiment
    workdir = os.path.join(self.root, group, run.name, f"seed{seed}")
    args = [*base, *passed, f"--seed={seed}", f"--workdir={workdir}", *dep_args]
    identity = {"trainer": trainer, "flags": resolve(expand(args)), "commit": self.commit,
                "needs": needs}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    job = Job(run, seed, workdir, f"{group}/{run.name} seed {seed}", trainer, args, identity,
              key, deps)
    self.jobs[(run.name, seed)] = job
    return job

  def _accepts(self, trainer, arg, method=None):
    """Whether `trainer` takes `arg`; a distillation run does not take another method's settings
    (trainers.distill refuses them), so `--dcd_top` reaches the DCD runs and not the RRD ones."""
    known = self.trainer_flags.get(trainer, {})
    name = arg[2:].split("=", 1)[0]
    if method is not None and flag_name(arg) in foreign_method_flags(method):
      return False
    return name in known or (name.startswith("no") and known.get(name[2:]) is True)


def _method(args):
  methods = [a.split("=", 1)[1] for a in args if a.startswith("--method=")]
  return methods[-1] if methods else None


@functools.lru_cache(maxsize=None)
def foreign_method_flags(method):
  """The flags of every other registered method's settings that `method`'s do not share."""
  from tfkd import config_flags, distill  # pylint: disable=g-import-not-at-top  (TensorFlow)
  names = {m: config_flags.flag_names(c.config_class, c.flag_prefix)
           for m, c in distill.METHODS.items()}
  own = names.get(method, set())
  return frozenset(set().union(*names.values()) - own)


def read_json(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def write_json(path, data):
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(data, f, indent=1, sort_keys=True)
  os.replace(tmp, path)


def _lock_holder(job):
  """The pid of another live reproduce, or of the run it started, running `job`; else None (a
  stale lock is ignored)."""
  lock = read_json(job.path(LOCK_FILE))
  if not lock or lock.get("host") != socket.gethostname() or lock.get("pid") == os.getpid():
    return None
  for pid in (lock.get("pid"), lock.get("child")):
    try:
      os.kill(pid, 0)
      return pid
    except (OSError, TypeError):
      continue
  return None


def difference(old, new):
  """How a recorded identity differs from a job's, in a few words."""
  if old.get("commit") != new["commit"]:
    return f"commit {str(old.get('commit'))[:7]} -> {new['commit'][:7]}"
  if old.get("trainer") != new["trainer"]:
    return f"trainer {old.get('trainer')} -> {new['trainer']}"
  gone = sorted(set(old.get("flags", [])) - set(new["flags"]))
  added = sorted(set(new["flags"]) - set(old.get("flags", [])))
  if gone or added:
    def some(args):
      return " ".join(args[:3]) + (" ..." if len(args) > 3 else "") if args else "(none)"
    return f"flags {some(gone)} -> {some(added)}"
  return "a run it needs changed"


def assess(jobs, rerun):
  """Sets each job's status (in dependency order: `jobs` lists a job after those it needs)."""
  for job in jobs:
    record, holder = read_json(job.path(RUN_FILE)), _lock_holder(job)
    if holder:
      job.status, job.note = ELSEWHERE, f"by another reproduce, pid {holder}"
    elif record is None and os.path.isdir(job.workdir) and os.listdir(job.workdir):
      job.status, job.note = MISMATCHED, "files not made by reproduce (no run.json)"
    elif record is not None and record.get("key") != job.key:
      job.status, job.note = MISMATCHED, difference(record.get("identity", {}), job.identity)
    elif record is not None and job.finished():
      job.status = DONE
    else:
      job.status = TODO
      job.note = "resumes" if os.path.isfile(job.path(CHECKPOINT_FILE)) else ""
    if job.status == MISMATCHED and rerun:
      job.status, job.clear, job.note = TODO, True, f"replaces a run of {job.note}"
    stuck = [d for d in job.deps if d.status in (MISMATCHED, BLOCKED, ELSEWHERE)]
    if job.status == TODO and stuck:
      job.status, job.note = BLOCKED, f"needs {stuck[0].label} ({stuck[0].status})"


def duration(seconds):
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def wall_seconds(job):
  """A finished job's wall time (run.json), else its metrics.json's train_seconds, else None."""
  record = read_json(job.path(RUN_FILE)) or {}
  if record.get("wall_seconds") is not None:
    return record["wall_seconds"]
  return (read_json(job.path(METRICS_FILE)) or {}).get("train_seconds")


def now():
  return datetime.datetime.now().isoformat(timespec="seconds")
