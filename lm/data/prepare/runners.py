"""Where the stages of a prepare run execute: the same stage functions (stages.py) and the same
decisions (duplicates.py), on one machine's processes or on Apache Beam.

  local  (default) per-shard stages in a pool of worker processes; the global duplicate pass
         out of core with numpy in this process (duplicates.resolve)
  beam   per-shard stages as a Beam ParDo; the global pass as Beam transforms
         (beam_dedup.resolve); any Beam runner: the DirectRunner on this machine (in-memory
         with one worker, multi-processing with more), or Dataflow, Flink, Spark through
         --beam_options (docs/data_prepare.md)

A runner records each shard's stage as soon as it is done (layout.record_stage), so an
interrupted run resumes where it stopped; a retried shard rewrites its own files.
"""

import concurrent.futures
import contextlib
import json
import logging
import multiprocessing
import os
import shlex
import signal
import sys
from typing import Any, Callable

from lm.data import atomic

from lm.data.prepare import duplicates, layout
from lm.errors import UserError

RUNNERS = ("local", "beam")
ShardFunction = Callable[[Any], dict]


def make_runner(name: str, processes: int, beam_options: str = "", workdir: str = ""):
  if processes < 1:
    raise UserError(f"--processes={processes}: must be >= 1")
  if name == "local":
    if beam_options:
      raise UserError("--beam_options is for --runner=beam")
    return LocalRunner(processes)
  if name == "beam":
    return BeamRunner(processes, beam_options, layout.beam_log_path(workdir))
  raise UserError(f"--runner={name!r}: must be one of {', '.join(RUNNERS)}")


def _run_and_record(task, function: ShardFunction, workdir: str, stage: str) -> None:
  layout.record_stage(workdir, f"{stage}/{task.name}", function(task))


def _user_error_of(task, function: ShardFunction, workdir: str, stage: str) -> str:
  """_run_and_record, with a user mistake returned as its message ('' when none)."""
  try:
    _run_and_record(task, function, workdir, stage)
  except UserError as e:
    return str(e)
  return ""


class _Runner:
  """A runner is a context manager: what it started for the run (worker processes) stops at
  the end of the block."""

  def __enter__(self):
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def close(self) -> None:
    pass


class LocalRunner(_Runner):
  """Worker processes on this machine, one pool for every stage of the run (started with the
  first stage that has two shards or more); the global pass in this process."""

  def __init__(self, processes: int):
    self.processes = processes
    self._pool = None

  def map_shards(self, workdir: str, stage: str, function: ShardFunction, tasks: list,
                 meanwhile: Callable[[], Any] | None = None) -> None:
    """Runs and records the tasks, and calls `meanwhile` in this process as the workers run
    them (after them, with one process or one task)."""
    if self.processes == 1 or len(tasks) <= 1:
      for task in tasks:
        _run_and_record(task, function, workdir, stage)
      if meanwhile:
        meanwhile()
      return
    with _ctrl_c_held_back():
      if self._pool is None:
        # spawn: a clean interpreter per worker (fork would copy this process's threads and
        # state). Workers start as tasks arrive, so a stage of fewer shards starts fewer.
        self._pool = concurrent.futures.ProcessPoolExecutor(
            self.processes, mp_context=multiprocessing.get_context("spawn"),
            initializer=_exit_quietly_on_ctrl_c)
      futures = {self._pool.submit(function, task): task for task in tasks}
    if meanwhile:
      meanwhile()
    for future in concurrent.futures.as_completed(futures):
      layout.record_stage(workdir, f"{stage}/{futures[future].name}", future.result())

  def close(self) -> None:
    """Waits for the workers' tasks (those of a stage that failed too), then stops them."""
    if self._pool is not None:
      self._pool.shutdown()
      self._pool = None

  def resolve_duplicates(self, config, workdir: str, num_shards: int) -> dict:
    return duplicates.resolve(config, workdir, num_shards)


class BeamRunner(_Runner):
  """Apache Beam: the DirectRunner with `processes` workers unless --beam_options says more."""

  def __init__(self, processes: int, beam_options: str, log_path: str):
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # Beam's import warns on the root logger (no GCP clients).
    try:
      import apache_beam  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError as e:
      raise UserError("--runner=beam needs Apache Beam: pip install --no-deps -r"
                      " requirements-beam.txt (see that file)") from e
    finally:
      root.setLevel(level)
    try:
      user_options = shlex.split(beam_options)
    except ValueError as e:
      raise UserError(f"--beam_options={beam_options!r}: {e}") from e
    mode = "multi_processing" if processes > 1 else "in_memory"
    # The user's options come last, so that they win.
    self.options = [f"--direct_num_workers={processes}", f"--direct_running_mode={mode}",
                    "--default_sdk_harness_log_level=ERROR", *user_options]
    self.processes = processes
    self.log_path = log_path

  @contextlib.contextmanager
  def pipeline(self):
    """A Beam pipeline to build in the block, run at its end; what the workers print (their
    start-up logs) goes to the workdir's beam.log, not the terminal."""
    import apache_beam as beam  # pylint: disable=g-import-not-at-top
    from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top
    p = beam.Pipeline(options=pipeline_options.PipelineOptions(self.options))
    yield p
    with _stderr_to(self.log_path):
      p.run().wait_until_finish()

  def map_shards(self, workdir: str, stage: str, function: ShardFunction, tasks: list,
                 meanwhile: Callable[[], Any] | None = None) -> None:
    """The tasks as a ParDo, then `meanwhile` in this process. A user mistake (UserError, e.g.
    a malformed record) is not retried: the worker hands its message back, and it is raised
    here once."""
    self._map_shards(workdir, stage, function, tasks)
    if meanwhile:
      meanwhile()

  def _map_shards(self, workdir: str, stage: str, function: ShardFunction, tasks: list) -> None:
    if not tasks:
      return
    import apache_beam as beam  # pylint: disable=g-import-not-at-top
    errors_path = os.path.join(workdir, "stages", f"{stage}-errors.json")
    if os.path.exists(errors_path):
      os.remove(errors_path)
    with self.pipeline() as p:
      _ = (p | "Tasks" >> beam.Create(tasks) | "Spread" >> beam.Reshuffle()
           | stage.capitalize() >> beam.Map(_user_error_of, function=function, workdir=workdir,
                                            stage=stage)
           | "Errors" >> beam.Filter(bool) | "AllErrors" >> beam.combiners.ToList()
           | "WriteErrors" >> beam.Map(lambda found: found and atomic.atomic_write_text(
               errors_path, json.dumps(sorted(found)))))
    if os.path.exists(errors_path):
      raise UserError(layout.read_json(errors_path)[0])

  def resolve_duplicates(self, config, workdir: str, num_shards: int) -> dict:
    from lm.data.prepare import beam_dedup  # pylint: disable=g-import-not-at-top
    return beam_dedup.resolve(config, workdir, num_shards, self.pipeline)


@contextlib.contextmanager
def _stderr_to(path: str):
  """File descriptor 2 of this process (and so of the subprocesses it starts) appended to
  `path` in the block."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  sys.stderr.flush()
  saved = os.dup(2)
  target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
  os.dup2(target, 2)
  os.close(target)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


@contextlib.contextmanager
def _ctrl_c_held_back():
  """Ctrl-C is delivered only after the block, where the pool and its workers start: a worker
  interrupted while it unpickles its start-up data, or one whose start-up data the interrupted
  main process never wrote, prints a traceback. Two holds: the signal mask, inherited by the
  workers (each lifts it in _exit_quietly_on_ctrl_c), and the Python handler, since the mask
  is per thread and another thread of this process may take the signal."""
  pending = []
  previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
  signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
  try:
    yield
  finally:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, previous)
    if pending:
      signal.raise_signal(signal.SIGINT)


def _exit_quietly_on_ctrl_c() -> None:
  """In a worker: Ctrl-C (sent to the whole process group) ends it without a traceback; the
  main process reports the interruption once, and a rerun redoes the unfinished shards."""
  signal.signal(signal.SIGINT, lambda signum, frame: os._exit(128 + signum))  # pylint: disable=protected-access
  signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # Held back while starting.
