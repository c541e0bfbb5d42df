"""Running a sweep's lm.main processes on this machine, N at a time, or printing their commands.

A run is finished once lm.main has written WORKDIR/final_metrics.json (at its last step, or
when it stopped early); finished runs are skipped. An interrupted run (no such file) is started
again with the same command, and lm.main resumes it from its latest checkpoint. Each process
writes its output to WORKDIR/log.txt. A failed run is reported with its log and the sweep goes
on. Ctrl-C or SIGTERM stops the sweep: the running processes get SIGTERM, save a checkpoint and
exit; a second signal kills them.

The processes share JAX's persistent compilation cache (`cache_dir`; the environment's
JAX_COMPILATION_CACHE_DIR wins): the seeds of a variant run the same programs, so only the
first compiles them (a smoke run on the 2-core CPU: 22 s -> 6 s).

With --parallel=N > 1 every process gets its share of the CPU cores (its affinity: lm.main
then makes one XLA CPU device per core it has, lm/runtime.py) and 1/N of the accelerator
memory (XLA_PYTHON_CLIENT_MEM_FRACTION), unless the environment sets that already.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable

from lm import config_paths, runtime
from lm.sweep.plan import Run
from lm.training import checkpoints, metrics_log

_POLL_SECONDS = 0.2
# JAX's default share of accelerator memory for one process, split between N processes.
_MEMORY_FRACTION = 0.75


def is_finished(run: Run) -> bool:
  return os.path.exists(os.path.join(run.workdir, metrics_log.FINAL_FILE))


def stale_overrides(run: Run) -> str:
  """'' or why the finished run in run.workdir is not this run: a seed or override that its
  saved config.json does not have (the sweep was edited after it ran)."""
  saved = checkpoints.load_config(run.workdir) or {}
  for key, value in {"seed": run.seed, **run.variant.overrides}.items():
    node = saved
    for part in key.split("."):
      node = node.get(part) if isinstance(node, dict) else None
    if node != config_paths.saved_value(key, value, run.seed):
      return (f"{run.workdir} holds a finished run with config.{key}={node!r}, but the sweep "
              f"now asks for {value!r}; delete that directory (or use another --workdir) to "
              f"run it again")
  return ""


def print_commands(runs: list[Run], out=sys.stdout) -> None:
  """One `python -m lm.main ...` line per run, for a cluster or a TPU VM; nothing runs."""
  for run in runs:
    print(run.command(), file=out)


class _Stop:
  """SIGINT/SIGTERM while the sweep runs: the first asks the processes to stop, a second kills
  them."""

  def __init__(self):
    self.count = 0
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():  # Only it may set handlers.
      for signum in (signal.SIGINT, signal.SIGTERM):
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def _handle(self, signum, frame):
    del signum, frame
    self.count += 1


def run_local(runs: list[Run],
              parallel: int = 1,
              cache_dir: str | None = None,
              report: Callable[[str], None] = print,
              python: str = sys.executable) -> tuple[list[Run], bool]:
  """Runs the unfinished `runs`, `parallel` at a time; returns (failed runs, interrupted)."""
  todo, failed = [], []
  for run in runs:
    if not is_finished(run):
      todo.append(run)
      continue
    stale = stale_overrides(run)
    if stale:
      report(f"FAILED {run.name}: {stale}")
      failed.append(run)
    else:
      report(f"skip {run.name}: finished")
  total, started, running = len(todo), 0, {}  # slot -> (run, process, start time)
  signalled = 0
  with _Stop() as stop:
    while (todo and not stop.count) or running:
      while todo and not stop.count and len(running) < parallel:
        slot = min(set(range(parallel)) - set(running))
        run = todo.pop(0)
        started += 1
        report(f"[{started}/{total}] start {run.name} (log: {run.log_path})")
        running[slot] = (run, launch(run, slot, parallel, cache_dir, python), time.monotonic())
      if stop.count > signalled:
        signalled = stop.count
        _signal_all(running, signal.SIGTERM if stop.count == 1 else signal.SIGKILL)
      time.sleep(_POLL_SECONDS)
      for slot, (run, process, start) in list(running.items()):
        if process.poll() is None:
          continue
        del running[slot]
        if process.returncode == 0:
          report(f"done {run.name} in {time.monotonic() - start:.0f} s")
        elif stop.count:
          report(f"stopped {run.name} (exit {process.returncode}); it resumes from its last "
                 f"checkpoint next time")
        else:
          report(f"FAILED {run.name} (exit {process.returncode}): {last_error(run.log_path)} "
                 f"(log: {run.log_path})")
          failed.append(run)
    interrupted = bool(stop.count)
  if interrupted:
    report(f"Stopped: {len(todo)} run(s) not started; run the same command to go on")
  return failed, interrupted


def launch(run: Run, slot: int, parallel: int, cache_dir: str | None,
            python: str) -> subprocess.Popen:
  os.makedirs(run.workdir, exist_ok=True)
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  if cache_dir:
    runtime.use_compilation_cache(env, cache_dir)
  cores = _cores_of(slot, parallel)
  if parallel > 1:
    env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{_MEMORY_FRACTION / parallel:.3f}")
  with open(run.log_path, "a", encoding="utf-8") as log:
    log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {run.command(python)}\n")
    log.flush()
    # Its own session: a Ctrl-C in the terminal reaches the sweep only, which then asks each
    # process once (a second SIGINT would make lm.main abort without its checkpoint).
    process = subprocess.Popen([python, *run.main_args()],
                               stdout=log,
                               stderr=subprocess.STDOUT,
                               env=env,
                               start_new_session=True)
  if cores:
    # Set from here, not in the child before exec: a fork of this process (JAX's threads) may
    # deadlock. Python's start-up takes far longer than this call, so lm.main sees the cores.
    try:
      os.sched_setaffinity(process.pid, cores)
    except ProcessLookupError:  # It has ended already.
      pass
  return process


def _cores_of(slot: int, parallel: int) -> set[int] | None:
  """The CPU cores of the process in `slot` of `parallel` (None: all, as the sweep has)."""
  if parallel <= 1 or not hasattr(os, "sched_getaffinity"):
    return None
  cores = sorted(os.sched_getaffinity(0))
  if len(cores) >= parallel:
    return set(cores[slot::parallel])
  return {cores[slot % len(cores)]}


def _signal_all(running: dict, signum: int) -> None:
  for _, process, _ in running.values():
    if process.poll() is None:
      try:
        process.send_signal(signum)
      except ProcessLookupError:
        pass


def last_error(log_path: str) -> str:
  """The `error: ...` line lm.main ends with on a user mistake, else the log's last line."""
  try:
    with open(log_path, encoding="utf-8", errors="replace") as f:
      lines = [line.strip() for line in f if line.strip()]
  except OSError:
    return "no log"
  errors = [line for line in lines if line.startswith("error: ")]
  return (errors or lines or ["empty log"])[-1]
