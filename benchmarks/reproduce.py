"""One command per paper table or figure: runs what is missing, then rewrites the experiment's
section of the report.

  python -m benchmarks.reproduce --experiment=dcd_table2 --seeds=0,1,2,3,4 --root=runs --jobs=2
  python -m benchmarks.reproduce --experiment=dcd_table2 --dataset=file --data_file=mine.csv \
      --root=runs_mine --report=mine.md

Experiments: dcd_table2, dcd_table3, dcd_fig1a, dcd_fig1b, speed (the DCD paper), cd_table2,
cd_fig6 (the CD paper); what each runs: benchmarks/experiments_dcd.py, experiments_cd.py and
docs/reproduce.md. Every other `--name=value` is passed to each run whose trainer defines the
flag (a flag no trainer defines is refused), and is part of those runs' identity. It prints the
plan first (runs reused, to run, mismatched; an estimate from the runs already timed), runs
`--jobs` at a time with a line per run started and finished, and then writes the section between
`<!-- reproduce:<experiment> begin -->` and `... end -->` of `--report`, figures in `results/`
beside it. Killed, it resumes: finished runs are reused and the others resume from their
checkpoints.
"""

import dataclasses
import datetime
import fnmatch
import os
import signal
import sys
import time

from absl import flags

from benchmarks import experiments
from benchmarks.reproduce_exec import execute, say_now, subprocess_launcher
from benchmarks.reproduce_report import save_figure, seeds_text, write_section
from benchmarks.reproduce_runs import (BLOCKED, DONE, ELSEWHERE, MISMATCHED, PER_JOB, TODO,
                                       Planner, ReproduceError, assess, duration, flag_name,
                                       git_state, query_flags, read_json, wall_seconds)

EXPERIMENTS = tuple(experiments.all_experiments())
TRAINERS = ("trainers.train", "trainers.distill")
SKIPPED = "skipped"


def define_flags(fv):
  d = dict(flag_values=fv)
  flags.DEFINE_string("experiment", None, f"What to reproduce: {', '.join(EXPERIMENTS)}.", **d)
  flags.DEFINE_list("seeds", [], "Seeds of every run (default: the experiment's; 0-4 for the "
                    "tables).", **d)
  flags.DEFINE_string("root", "runs", "Where the runs' work directories go.", **d)
  flags.DEFINE_integer("jobs", 2, "Runs side by side.", lower_bound=1, **d)
  flags.DEFINE_string("report", "RESULTS.md", "The report whose section is rewritten.", **d)
  flags.DEFINE_bool("report_only", False, "Run nothing; report the finished runs.", **d)
  flags.DEFINE_bool("rerun", False, "Replace the runs whose identity (flags, commit) differs.", **d)
  flags.DEFINE_integer("teacher_seed", 0, "Seed of the teacher every student distils.", **d)
  flags.DEFINE_list("only", [], "Run only the runs whose names match these patterns (and what "
                    "they need), e.g. 'bpr_*'; the report covers every finished run.", **d)
  flags.DEFINE_list("grid", [], "dcd_fig1b: the lambda values of each axis (at least 3, "
                    "including 0; default 0,1e-4,1e-3,1e-2).", **d)


@dataclasses.dataclass
class Outcome:
  jobs: list
  failed: list
  section: object = None
  report: str = ""


def check_passthrough(args, trainer_flags=None):
  """Refuses, in one line, what is not a --flag, the flags reproduce sets itself and (given the
  trainers' flags) what no trainer defines."""
  for arg in args:
    if not arg.startswith("--") or arg == "--":
      raise ReproduceError(f"unexpected argument {arg!r}: expected reproduce's flags and "
                           "--name=value flags passed to the runs")
    name, base = arg[2:].split("=", 1)[0], flag_name(arg)
    if name in PER_JOB or base in PER_JOB:
      raise ReproduceError(f"{arg}: reproduce sets --{base} of every run itself (see --seeds, "
                           "--root, --teacher_seed)")
    if trainer_flags is not None and not any(
        name in f or (base in f and f[base] is True) for f in trainer_flags.values()):
      raise ReproduceError(f"{arg}: no flag --{name} in {' or '.join(trainer_flags)}")


def select(jobs, patterns):
  """Marks the jobs to run that --only leaves out (and need nothing it selects) as skipped."""
  if not patterns:
    return
  chosen = set()

  def take(job):
    if job not in chosen:
      chosen.add(job)
      for dep in job.deps:
        take(dep)
  for job in jobs:
    if any(fnmatch.fnmatchcase(job.run.name, p) for p in patterns):
      take(job)
  for job in jobs:
    if job not in chosen and job.status == TODO:
      job.status, job.note = SKIPPED, "--only"


def plan_text(exp, jobs, root, commit, seeds, teacher_seed, parallel):
  lines = [f"{exp.name} ({exp.title}): {len(jobs)} runs under {root}, commit {commit[:7]}, "
           f"seeds {seeds_text(seeds)}, teachers of seed {teacher_seed}"]
  by_label = {}
  for job in jobs:
    by_label.setdefault(job.label.rsplit(" seed ", 1)[0], []).append(job)
  for label, group in by_label.items():
    parts = []
    for status in (DONE, TODO, MISMATCHED, BLOCKED, ELSEWHERE, SKIPPED):
      seeds_ = [j.seed for j in group if j.status == status]
      if seeds_:
        parts.append(f"{status} {seeds_text(seeds_)}")
    notes = sorted({f"seed {j.seed}: {j.note}" for j in group if j.note and j.status != SKIPPED})
    lines.append(f"  {label}: {'; '.join(parts)}" + (f" ({'; '.join(notes)})" if notes else ""))
  if any(j.status == MISMATCHED for j in jobs):
    lines.append("  mismatched runs are neither run nor reported: --rerun replaces them (or use "
                 "another --root)")
  todo = [j for j in jobs if j.status == TODO]
  timed = {}
  for job in jobs:
    if job.status == DONE and wall_seconds(job):
      timed.setdefault(job.run.name, []).append(wall_seconds(job))
  known = [sum(timed[j.run.name]) / len(timed[j.run.name]) for j in todo if j.run.name in timed]
  estimate = (f"; estimated {duration(sum(known))} of run time for {len(known)} of them (their "
              f"finished seeds), about {duration(sum(known) / parallel)} at {parallel} at a time"
              if known else "")
  unknown = len(todo) - len(known)
  lines.append(f"to run: {len(todo)} runs{estimate}"
               + (f"; {unknown} not estimated (no finished seed)" if unknown and todo else ""))
  return "\n".join(lines)


def provenance(exp, done, jobs, options, commit, elapsed):
  """The section's opening lines: command, date, commit, data, seeds, runs and their wall time."""
  records = [read_json(j.path("run.json")) or {} for j in done]
  dirty = sum(bool(r.get("dirty")) for r in records)
  data = sorted({str(read_json(j.path("metrics.json")).get("dataset", "?")) for j in done
                 if j.trainer.startswith("trainers.")})
  passed = " ".join(options["passthrough"])
  wall = sum(wall_seconds(j) or 0 for j in done)
  missing = {}
  for j in jobs:
    if j.status != DONE:
      missing.setdefault(j.run.name, []).append(j.seed)
  lines = [
      f"_Generated by `{options['command']}` on {datetime.date.today().isoformat()}; the command "
      "rewrites this section between its markers (do not edit it by hand)._", "",
      f"- Reproduces: {exp.title}.",
      f"- Code commit: {commit[:10]}" + (f" ({dirty} of the {len(done)} runs ran with "
                                         "uncommitted changes to that code)" if dirty else "")
      + ".",
      f"- Data: {', '.join(data) or '-'} (the runs' metrics.json); "
      + (f"flags passed to every run: `{passed}`." if passed else "as the configs set it."),
      f"- Seeds: {seeds_text(options['seeds'])}; students distil the teacher of seed "
      f"{options['teacher_seed']}.",
      f"- Runs: {len(done)} of {len(jobs)} finished, {duration(wall)} of wall time summed over "
      f"them (run.json); this invocation took {duration(elapsed)}."]
  if missing:
    lines.append("- Not finished (left out): " + "; ".join(
        f"`{name}` seed{'s' if len(seeds) > 1 else ''} {seeds_text(seeds)}"
        for name, seeds in missing.items()) + ".")
  seen = {}
  for job in jobs:
    seen.setdefault(job.run.name, job.run)
  lines.append("- Run definitions: " + "; ".join(
      f"`{name}` {experiments.describe(r, options['teacher_seed'])}" for name, r in seen.items())
               + ".")
  return "\n".join(lines)


def canonical_command(options):
  parts = ["python -m benchmarks.reproduce", f"--experiment={options['experiment']}",
           f"--seeds={','.join(map(str, options['seeds']))}"]
  for key, default in (("root", "runs"), ("teacher_seed", 0), ("report", "RESULTS.md")):
    if options[key] != default:
      parts.append(f"--{key}={options[key]}")
  for key in ("only", "grid"):
    if options[key]:
      parts.append(f"--{key}={','.join(map(str, options[key]))}")
  return " ".join([*parts, *options["passthrough"]])


def write_report(exp, section, done, jobs, options, commit, elapsed):
  report = os.path.abspath(options["report"])
  parts = [provenance(exp, done, jobs, options, commit, elapsed), section.markdown()]
  for stem, figure in section.figures.items():
    save_figure(figure, os.path.join(os.path.dirname(report), "results", f"{stem}.png"))
    parts.append(f"![{section.title}](results/{stem}.png)")
  write_section(report, exp.name, f"## {section.title}\n\n" + "\n\n".join(parts))
  return report


def reproduce(experiment, seeds=(), root="runs", parallel=2, report="RESULTS.md",
              report_only=False, rerun=False, passthrough=(), teacher_seed=0, only=(), grid=(),
              launcher=subprocess_launcher, say=say_now, poll_seconds=1.0, trainer_flags=None):
  """The library function behind the command: plans, runs what is missing (`launcher(job)` starts
  a job and returns a handle with poll() and terminate()), writes the report. `trainer_flags`
  ({trainer: {flag: is boolean}}) saves asking the trainers. Returns an Outcome; raises
  ReproduceError on bad input."""
  start = time.time()
  if grid and experiment != "dcd_fig1b":
    raise ReproduceError(f"--grid applies to dcd_fig1b only, not --experiment={experiment}")
  exp = experiments.get(experiment, grid=tuple(grid) or None)
  seeds, passthrough = tuple(seeds) or exp.default_seeds, list(passthrough)
  if passthrough:
    check_passthrough(passthrough)  # before asking the trainers, which takes seconds
    trainer_flags = trainer_flags or query_flags(TRAINERS)
    check_passthrough(passthrough, trainer_flags)
  commit, _ = git_state()
  planner = Planner(os.path.abspath(root), exp.name, teacher_seed, passthrough,
                    trainer_flags or {}, commit)
  for run in exp.runs:
    for seed in seeds:
      planner.job(run, seed)
  jobs = list(planner.jobs.values())  # each after the jobs it needs
  assess(jobs, rerun)
  select(jobs, list(only))
  if report_only:
    done = [j for j in jobs if j.status == DONE]
    if not done:
      raise ReproduceError(f"--report_only: nothing of {exp.name} has run under {root} yet (none "
                           f"of its {len(jobs)} runs finished); run it without --report_only")
    say(f"--report_only: reporting the {len(done)} finished runs of {len(jobs)}")
  else:
    say(plan_text(exp, jobs, root, commit, seeds, teacher_seed, parallel))
  failed = [] if report_only else execute(jobs, parallel, launcher, say, poll_seconds)
  done = [j for j in jobs if j.status == DONE]
  if not done:
    raise ReproduceError(f"no run of {exp.name} finished under {root}; see the lines above")
  options = dict(experiment=exp.name, seeds=seeds, root=root, teacher_seed=teacher_seed,
                 report=report, only=list(only), grid=list(grid), passthrough=passthrough)
  options["command"] = canonical_command(options)
  section = exp.build(experiments.Results(done, teacher_seed))
  path = write_report(exp, section, done, jobs, options, commit, time.time() - start)
  say(f"wrote the {exp.name} section of {path}"
      + (f"; {len(failed)} runs failed or could not run" if failed else ""))
  return Outcome(jobs, failed, section, path)


HELP = ("--help", "-h", "--helpshort", "--helpfull", "-?")


def usage():
  fv = flags.FlagValues()
  define_flags(fv)
  return __doc__ + "\nflags:\n" + fv.get_help(include_special_flags=False)


def parse(argv):
  """(reproduce's options, the flags to pass through) from a command line (without argv[0])."""
  fv = flags.FlagValues()
  define_flags(fv)
  try:
    rest = fv(["reproduce", *argv], known_only=True)[1:]
  except flags.Error as e:
    raise ReproduceError(str(e).splitlines()[0]) from None
  if not fv.experiment:
    raise ReproduceError(f"--experiment: missing; expected one of {', '.join(EXPERIMENTS)}")
  try:
    seeds = [int(s) for s in fv.seeds]
  except ValueError:
    raise ReproduceError(f"--seeds={','.join(fv.seeds)}: expected integers, e.g. 0,1,2") from None
  if len(set(seeds)) != len(seeds):
    raise ReproduceError(f"--seeds={','.join(fv.seeds)}: a seed is repeated")
  try:
    grid = sorted({float(g) for g in fv.grid})
  except ValueError:
    raise ReproduceError(f"--grid={','.join(fv.grid)}: expected numbers, e.g. 0,1e-4,1e-3") \
        from None
  if grid and (len(grid) < 3 or 0.0 not in grid or grid[0] < 0):
    raise ReproduceError(f"--grid={','.join(fv.grid)}: expected at least 3 values >= 0, "
                         "including 0")
  return dict(experiment=fv.experiment, seeds=seeds, root=fv.root, parallel=fv.jobs,
              report=fv.report, report_only=fv.report_only, rerun=fv.rerun,
              teacher_seed=fv.teacher_seed, only=fv.only, grid=grid), rest


def _interrupt(signum, frame):
  raise KeyboardInterrupt


def main(argv=None):
  """The command; returns its exit status (1: bad input or failed runs; 130: interrupted)."""
  argv = sys.argv[1:] if argv is None else argv
  if any(arg in HELP for arg in argv):
    print(usage())
    return 0
  try:
    options, passthrough = parse(argv)
    outcome = reproduce(passthrough=passthrough, **options)
  except ReproduceError as e:
    print(f"reproduce: error: {e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print("reproduce: interrupted; run the same command to go on (finished runs are reused, "
          "the others resume from their checkpoints)", file=sys.stderr)
    return 130
  return 1 if outcome.failed else 0


if __name__ == "__main__":
  signal.signal(signal.SIGTERM, _interrupt)  # a plain kill stops the runs as Ctrl-C does
  sys.exit(main())
