"""Running the jobs of `python -m benchmarks.reproduce`: `--jobs` subprocesses side by side, each
after the jobs it needs, a line per start and end; stopping them on an interrupt.

Each job's output goes to `reproduce.log` in its work directory. While it runs, `reproduce.lock`
there names this process (another reproduce leaves the job alone); `run.json` gains an attempt
(start, end, seconds, exit status, --jobs) per start, and its wall time is their sum.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from benchmarks.reproduce_runs import (BLOCKED, DONE, LOCK_FILE, LOG_FILE, REPO, RUN_FILE, TODO,
                                       duration, git_state, now, read_json, write_json)


def _die_with_parent():
  """In the child: SIGTERM when reproduce dies (Linux prctl PR_SET_PDEATHSIG), so a killed
  reproduce leaves no run behind to race the next one; the run resumes from its checkpoint."""
  try:
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)
  except (OSError, AttributeError):
    pass


def subprocess_launcher(job):
  """Starts a job's command from the repository, its output appended to reproduce.log."""
  with open(job.path(LOG_FILE), "ab") as log:
    return subprocess.Popen(
        job.command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")),
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)


def _start(job, launcher, parallel):
  if job.clear:
    shutil.rmtree(job.workdir, ignore_errors=True)
  os.makedirs(job.workdir, exist_ok=True)
  write_json(job.path(LOCK_FILE), {"pid": os.getpid(), "host": socket.gethostname()})
  record = read_json(job.path(RUN_FILE)) or {}
  attempts = record.get("attempts", []) if record.get("key") == job.key else []
  attempts.append({"started": now(), "pid": os.getpid(), "jobs": parallel})
  write_json(job.path(RUN_FILE), {"run": job.run.name, "seed": job.seed, "key": job.key,
                                  "identity": job.identity, "command": job.command,
                                  "dirty": git_state()[1], "attempts": attempts})
  try:
    handle = launcher(job)
  except BaseException:
    os.unlink(job.path(LOCK_FILE))
    raise
  if getattr(handle, "pid", None):  # the run itself holds the lock too (if it outlives us)
    write_json(job.path(LOCK_FILE), {"pid": os.getpid(), "child": handle.pid,
                                     "host": socket.gethostname()})
  return handle


def _finish(job, returncode, started):
  record = read_json(job.path(RUN_FILE))
  record["attempts"][-1].update(finished=now(), seconds=round(time.time() - started, 1),
                                returncode=returncode)
  record["wall_seconds"] = round(sum(a.get("seconds", 0) for a in record["attempts"]), 1)
  write_json(job.path(RUN_FILE), record)
  if os.path.exists(job.path(LOCK_FILE)):
    os.unlink(job.path(LOCK_FILE))


def _startable(job, running):
  if any(d.status != DONE for d in job.deps):
    return False
  return not running or not (job.run.exclusive or any(j.run.exclusive for j in running))


def say_now(line):
  print(line, flush=True)


def execute(jobs, parallel, launcher=subprocess_launcher, say=say_now, poll_seconds=1.0):
  """Runs the jobs to run, `parallel` at a time, each after the jobs it needs; prints a line per
  start and end. Returns the jobs that failed. On an interrupt the running jobs are stopped
  (they resume from their checkpoints next time) and the interrupt goes on."""
  pending = [j for j in jobs if j.status == TODO]
  total, running, failed = len(pending), {}, []
  try:
    while pending or running:
      for job in [j for j in pending if any(d in failed for d in j.deps)]:
        pending.remove(job)
        job.status, job.note = BLOCKED, "a run it needs failed"
        failed.append(job)
      for job in list(pending):
        if len(running) >= parallel or not _startable(job, running):
          continue
        pending.remove(job)
        resumes = " (resumes from its checkpoint)" if job.note == "resumes" else ""
        say(f"{time.strftime('%H:%M:%S')} start  {job.label}{resumes}")
        running[job] = (_start(job, launcher, parallel), time.time())
      if pending and not running:  # what is left needs a run that will not finish here
        for job in pending:
          job.status, job.note = BLOCKED, "needs a run that did not run"
        failed += pending
        pending = []
      for job, (handle, started) in list(running.items()):
        code = handle.poll()
        if code is None:
          continue
        del running[job]
        _finish(job, code, started)
        ok = code == 0 and job.finished()
        job.status = DONE if ok else "failed"
        if not ok:
          failed.append(job)
        done = total - len(pending) - len(running)
        tail = "" if ok else f" (exit {code}; log: {job.path(LOG_FILE)})"
        say(f"{time.strftime('%H:%M:%S')} {'done  ' if ok else 'FAILED'} {job.label} in "
            f"{duration(time.time() - started)} [{done}/{total}]{tail}")
      if running or pending:
        time.sleep(poll_seconds)
  except BaseException:
    for job, (handle, started) in running.items():
      handle.terminate()
      _wait(handle)
      _finish(job, -signal.SIGTERM, started)
    raise
  return failed


def _wait(handle, seconds=30):
  try:
    handle.wait(timeout=seconds)
  except subprocess.TimeoutExpired:
    handle.kill()
  except AttributeError:  # a stand-in handle without wait
    pass
