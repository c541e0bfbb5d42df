"""Fault injection: SIGKILL, SIGTERM, SIGINT, damaged checkpoints, full and unwritable disks.

Trains experiments/shakespeare_char.py:cpu,smoke (100 steps, a checkpoint every 5 and at each
new best evaluation) as `python -m lm.main` subprocesses, injects faults, restarts until the run
finishes and compares its final parameters with an uninterrupted run's, bit for bit. Prints a
Markdown table; per fault:
  injected   faults injected
  survived   faults handled as designed (the next start resumed from the newest intact
             checkpoint; a workdir that cannot hold a run was refused with one `error:` line
             before training), in a run that then finished with the reference parameters
  data lost  starts that resumed from an older checkpoint than the newest intact one, plus runs
             whose final parameters differ from the uninterrupted run's

  .venv/bin/python benchmarks/fault_injection.py [--kills=20] [--seed=0]

The real-disk rows mount a tiny tmpfs in a private mount namespace (`unshare -m`, needs root);
elsewhere they are reported as skipped. ~6-9 minutes on the 2-vCPU VM (BENCHMARKS.md).
"""

import argparse
import dataclasses
import errno
import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "experiments/shakespeare_char.py:cpu,smoke"
TMP_SUFFIX = ".orbax-checkpoint-tmp"


def train_args(steps: int = 100) -> tuple[str, ...]:
  return (f"--config.train.steps={steps}", "--config.train.checkpoint_every=5",
          "--config.train.eval_every=25", "--config.train.log_every=5",
          "--config.train.sample_prompt=")


def command(workdir: str, args: tuple[str, ...], child: tuple[str, ...] = ()) -> list[str]:
  """`python -m lm.main ...`, or this file's `child` mode (a fault hook) in front of it."""
  prefix = [sys.executable, os.path.abspath(__file__), *child] if child else [
      sys.executable, "-m", "lm.main"]
  return [*prefix, f"--config={CONFIG}", f"--workdir={workdir}", *args]


def environment() -> dict[str, str]:
  """Without XLA_FLAGS (pytest's 8 fake devices): one device per core, like a user's run."""
  return {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}


def committed(workdir: str) -> list[int]:
  """Steps whose checkpoint directory was committed (renamed from its temporary name)."""
  directory = os.path.join(workdir, "checkpoints")
  names = os.listdir(directory) if os.path.isdir(directory) else []
  return sorted(int(n) for n in names if n.isdigit())


def newest(workdir: str) -> int | None:
  steps = committed(workdir)
  return steps[-1] if steps else None


def saving(workdir: str) -> bool:
  return bool(glob.glob(os.path.join(workdir, "checkpoints", f"*{TMP_SUFFIX}*")))


def metric_lines(workdir: str) -> int:
  try:
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
      return sum(1 for _ in f)
  except OSError:
    return 0


def error_lines(text: str) -> list[str]:
  """The `error: ...` lines of a run's output (lm.main's report of a UserError)."""
  return [line for line in text.splitlines() if line.startswith("error:")]


class Run:
  """One training process, its output in a log file."""

  def __init__(self,
               workdir: str,
               args: tuple[str, ...],
               child: tuple[str, ...] = (),
               expected: int | None | str = "newest"):
    self.workdir = workdir
    # Where it must resume from: the newest committed checkpoint unless that one is damaged.
    self.expected = newest(workdir) if expected == "newest" else expected
    self.lines_at_start = metric_lines(workdir)
    self._log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # pylint: disable=consider-using-with
    self.process = subprocess.Popen(command(workdir, args, child),  # pylint: disable=consider-using-with
                                    cwd=REPO,
                                    env=environment(),
                                    stdout=self._log,
                                    stderr=subprocess.STDOUT)
    self.started = time.perf_counter()

  def alive(self) -> bool:
    return self.process.poll() is None

  def wait(self, timeout: float = 600) -> int:
    return self.process.wait(timeout)

  def output(self) -> str:
    with open(self._log.name, encoding="utf-8", errors="replace") as f:
      return f.read()

  def resumed_from(self) -> int | None | str:
    """The step it resumed from, None for a fresh start, '?' if it ended before saying."""
    text = self.output()
    found = re.search(r"Resuming from step (\d+)", text)
    if found:
      return int(found.group(1))
    return None if "Model:" in text else "?"

  def resumed_right(self) -> bool:
    return self.resumed_from() in (self.expected, "?")

  def wait_until(self, condition, timeout: float = 300, poll: float = 0.002) -> bool:
    """Polls `condition()` while the process lives; True once it holds."""
    deadline = time.perf_counter() + timeout
    while self.alive() and time.perf_counter() < deadline:
      if condition():
        return True
      time.sleep(poll)
    return False

  def signal(self, signum: int) -> bool:
    """Sends `signum` if still running; True if it was."""
    if not self.alive():
      return False
    os.kill(self.process.pid, signum)
    return True

  def close(self) -> None:
    if self.alive():
      self.process.kill()
      self.process.wait()
    os.unlink(self._log.name)


@dataclasses.dataclass
class Outcome:
  """One table row; `mishandled` counts faults not handled as designed."""
  fault: str
  injected: int = 0
  mishandled: int = 0
  lost: int = 0
  finished: bool = False  # With the reference parameters.
  notes: list[str] = dataclasses.field(default_factory=list)

  def wrong(self, note: str = "", lost: int = 0) -> None:
    self.mishandled += 1
    self.lost += lost
    if note:
      self.notes.append(note)

  def row(self, root: str = "") -> str:
    survived = self.injected - self.mishandled if self.finished else 0
    notes = "; ".join(dict.fromkeys(n for n in self.notes if n))  # Once each, in order.
    if root:
      notes = notes.replace(root, "$ROOT")
    return f"| {self.fault} | {self.injected} | {survived} | {self.lost} | {notes} |"


def final_params(workdir: str):
  """The parameters of the newest checkpoint, as numpy arrays."""
  import jax  # pylint: disable=g-import-not-at-top
  from lm.training import checkpoints  # pylint: disable=g-import-not-at-top
  checkpointer = checkpoints.Checkpointer(workdir, read_only=True)
  try:
    params, _ = checkpointer.restore_params(checkpointer.latest_step())
  finally:
    checkpointer.close()
  return jax.device_get(params)


def same_params(workdir: str, reference: str) -> bool:
  """Bit-for-bit equal final parameters (same tree, every leaf array_equal)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  a, b = final_params(workdir), final_params(reference)
  if jax.tree.structure(a) != jax.tree.structure(b):
    return False
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def reference_run(workdir: str, args: tuple[str, ...]) -> float:
  """Trains without faults; returns the seconds from launch to the first metrics line."""
  run = Run(workdir, args)
  run.wait_until(lambda: metric_lines(workdir) > 0, poll=0.05)
  startup = time.perf_counter() - run.started
  if run.wait() != 0:
    raise RuntimeError(f"the reference run failed:\n{run.output()[-3000:]}")
  run.close()
  return startup


def _finish(outcome: Outcome, workdir: str, reference: str, args: tuple[str, ...],
            expected="newest") -> Outcome:
  """Runs the workdir to the end (checking where it resumed) and compares with the reference."""
  run = Run(workdir, args, expected=expected)
  rc = run.wait()
  if not run.resumed_right():
    outcome.wrong(f"the last start resumed from {run.resumed_from()}, not {run.expected}", lost=1)
  run.close()
  if rc != 0:
    outcome.lost += 1
    outcome.notes.append(f"the last start exited {rc}")
  elif not same_params(workdir, reference):
    outcome.lost += 1
    outcome.notes.append("FINAL PARAMETERS DIFFER")
  else:
    outcome.finished = True
  left = glob.glob(os.path.join(workdir, "checkpoints", f"*{TMP_SUFFIX}*"))
  if left:
    outcome.notes.append(f"{len(left)} temporary directories left")
  return outcome


def sigkills(workdir: str, reference: str, kills: int, rng: random.Random, startup: float,
             args: tuple[str, ...]) -> Outcome:
  """SIGKILL at random moments, in turn: during start-up, during a checkpoint save (a temporary
  directory exists), at a random time in training, during a save. A run that finishes before
  all kills are spent is checked, and the kills go on in a fresh workdir."""
  outcome = Outcome("SIGKILL at a random moment")
  during_save = verified = runs = 0
  all_finished = True
  while outcome.injected < kills:
    run_dir = os.path.join(workdir, str(runs))
    runs += 1
    while outcome.injected < kills:
      run = Run(run_dir, args)
      mode = ("startup", "save", "training", "save")[outcome.injected % 4]
      if mode == "startup":
        time.sleep(rng.uniform(0, startup))
      elif mode == "save":
        run.wait_until(lambda: saving(run_dir))
        time.sleep(rng.uniform(0, 0.03))
      else:
        lines = run.lines_at_start
        run.wait_until(lambda: metric_lines(run_dir) > lines, poll=0.01)
        time.sleep(rng.uniform(0, 1.0))
      hit_save = saving(run_dir)
      killed = run.signal(signal.SIGKILL)
      run.wait()
      if not run.resumed_right():
        outcome.wrong(f"resumed from {run.resumed_from()}, not {run.expected}", lost=1)
      said = run.resumed_from() != "?"
      run.close()
      if not killed:  # Finished first.
        break
      outcome.injected += 1
      during_save += hit_save
      verified += said
    _finish(outcome, run_dir, reference, args)
    all_finished &= outcome.finished
  outcome.finished = all_finished
  outcome.notes.append(f"{runs} runs; {during_save} kills while a checkpoint was being written; "
                       f"{verified} killed starts had said where they resumed: each from the "
                       f"newest committed step")
  return outcome


def preemptions(workdir: str, reference: str, signum: int, count: int, rng: random.Random,
                args: tuple[str, ...]) -> Outcome:
  """SIGTERM/SIGINT mid-run: exit 128 + signum after saving the current step; resume there."""
  outcome = Outcome(f"{signal.Signals(signum).name} mid-run")
  stops = []
  for _ in range(count):
    run = Run(workdir, args)
    lines = run.lines_at_start + rng.randint(1, 3)
    run.wait_until(lambda: metric_lines(workdir) >= lines, poll=0.01)
    time.sleep(rng.uniform(0, 0.3))
    if not run.signal(signum):
      outcome.notes.append("the run finished before the signal")
      run.close()
      break
    rc = run.wait()
    found = re.search(r"Preempted at step (\d+): checkpoint saved", run.output())
    outcome.injected += 1
    if not run.resumed_right():
      outcome.wrong(f"resumed from {run.resumed_from()}, not {run.expected}", lost=1)
    elif rc != 128 + signum or not found or newest(workdir) != int(found.group(1)):
      outcome.wrong(f"exit {rc}, no checkpoint at the stop: {run.output()[-300:]!r}")
    else:
      stops.append(found.group(1))
    run.close()
  outcome.notes.append(f"exit {128 + signum}, checkpoint at the stop (steps {', '.join(stops)}); "
                       f"each next start resumed there")
  return _finish(outcome, workdir, reference, args)


def damage(step_dir: str, kind: str) -> None:
  """Deletes or truncates files inside a committed step directory."""
  data_files = [
      f for f in glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
      if os.path.isfile(f)
  ]
  if kind == "truncate array files":
    for f in data_files:
      os.truncate(f, os.path.getsize(f) // 2)
  elif kind == "delete array files":
    for f in data_files:
      os.remove(f)
  elif kind == "truncate the data-iterator JSON":
    os.truncate(os.path.join(step_dir, "data", "metadata"), 5)
  elif kind == "delete the state metadata":
    os.remove(os.path.join(step_dir, "state", "_METADATA"))
  else:
    raise ValueError(kind)


DAMAGE = ("truncate array files", "delete array files", "truncate the data-iterator JSON",
          "delete the state metadata")


def damaged_latest(workdir: str, reference: str, rng: random.Random,
                   args: tuple[str, ...]) -> Outcome:
  """Kills the run, damages its newest checkpoint; the next start must use the one before."""
  outcome = Outcome("damaged newest checkpoint (" + "; ".join(DAMAGE) + ")")
  expected = "newest"
  for kind in DAMAGE:
    run = Run(workdir, args, expected=expected)
    target = (newest(workdir) or 0) + rng.choice((10, 15))
    run.wait_until(lambda: (newest(workdir) or 0) >= target, poll=0.01)
    killed = run.signal(signal.SIGKILL)
    run.wait()
    if not run.resumed_right():
      outcome.wrong(f"resumed from {run.resumed_from()}, not {run.expected}", lost=1)
    run.close()
    if not killed:
      outcome.notes.append("the run finished before the fault")
      expected = "newest"
      break
    steps = committed(workdir)
    damage(os.path.join(workdir, "checkpoints", str(steps[-1])), kind)
    outcome.injected += 1
    expected = steps[-2]
  _finish(outcome, workdir, reference, args, expected=expected)
  moved = glob.glob(os.path.join(workdir, "checkpoints", "*.damaged-*"))
  outcome.notes.append(f"each moved aside ({len(moved)} `<step>.damaged-<time>`) with a warning; "
                       f"the start resumed from the one before")
  return outcome


def disk_full_simulated(workdir: str, reference: str, args: tuple[str, ...],
                        steps: int) -> Outcome:
  """A save fails with ENOSPC (an OSError, and tensorstore's ValueError form) in this file's
  child mode; the run stops with one error line, the restart resumes from the previous one."""
  outcome = Outcome("disk full during a save (simulated: the write raises ENOSPC)")
  for form, share in (("oserror", 0.2), ("tensorstore", 0.45)):
    fail_at = 5 * max(1, round(steps * share / 5))
    run = Run(workdir, args, child=("_enospc_child", form, str(fail_at)))
    rc = run.wait()
    text = run.output()
    run.close()
    outcome.injected += 1
    errors = error_lines(text)
    ok = (rc == 2 and len(errors) == 1 and errors[0].startswith(
        f"error: --workdir={workdir}: saving the checkpoint of step {fail_at} failed (No space "
        f"left on device)") and not saving(workdir) and fail_at not in committed(workdir))
    if not ok:
      outcome.wrong(f"{form}: exit {rc}: {text[-400:]!r}")
  outcome.notes.append("exit 2, one `error:` line naming the step; its partial directory "
                       "removed; the restart resumed from the checkpoint before")
  return _finish(outcome, workdir, reference, args)


def unwritable(root: str, reference: str, args: tuple[str, ...]) -> Outcome:
  """Workdirs that cannot be written: refused with one error line before any training."""
  outcome = Outcome("unwritable workdir (under a file; read-only dir; read-only checkpoints/)")
  blocker = os.path.join(root, "a_file")
  with open(blocker, "w", encoding="utf-8") as f:
    f.write("not a directory\n")
  readonly = os.path.join(root, "readonly")
  os.makedirs(readonly)
  resumed = os.path.join(root, "resumed")
  shutil.copytree(reference, resumed)
  for step in committed(resumed)[-2:]:  # Leave a half-done run: it must resume afterwards.
    shutil.rmtree(os.path.join(resumed, "checkpoints", str(step)))
  cases = ((os.path.join(blocker, "run"), None, "cannot create it"),
           (readonly, readonly, "cannot write in"),
           (resumed, os.path.join(resumed, "checkpoints"), "cannot write in"))
  for workdir, locked, message in cases:
    with _read_only(locked) as how:
      run = Run(workdir, args)
      rc = run.wait()
      text = run.output()
      run.close()
    outcome.injected += 1
    errors = error_lines(text)
    if rc != 2 or len(errors) != 1 or message not in errors[0] or "Traceback" in text:
      outcome.wrong(f"{workdir}: exit {rc}: {text[-300:]!r}")
    if how:
      outcome.notes.append(how)
  outcome.notes.append("exit 2 before training, one `error:` line; the half-done run then "
                       "resumed and finished")
  return _finish(outcome, resumed, reference, args)


class _read_only:  # pylint: disable=invalid-name
  """Makes a directory unwritable: chmod 0o500, or for root (whom modes do not stop)
  `chattr +i`."""

  def __init__(self, path: str | None):
    self.path = path

  def __enter__(self) -> str:
    if self.path is None:
      return ""
    if os.geteuid() != 0:
      os.chmod(self.path, 0o500)
      return ""
    subprocess.run(["chattr", "+i", self.path], check=True)
    return "as root, read-only by `chattr +i`"

  def __exit__(self, *exc) -> None:
    if self.path is None:
      return
    if os.geteuid() != 0:
      os.chmod(self.path, 0o700)
    else:
      subprocess.run(["chattr", "-i", self.path], check=True)


def disk_full_real(root: str, reference: str, args: tuple[str, ...]) -> list[Outcome]:
  """Real ENOSPC on a tmpfs in a private mount namespace: this file's `_tmpfs_child` mode."""
  rows = [Outcome("disk full mid-run (real: tmpfs filled during training)"),
          Outcome("disk too small for two checkpoints (real: tmpfs, preflight)")]
  if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"],
                                                       check=False).returncode != 0:
    for row in rows:
      row.notes.append("skipped: needs root and `unshare -m`")
      row.finished = True
    return rows
  result_file = os.path.join(root, "tmpfs_result.json")
  subprocess.run([
      "unshare", "-m", sys.executable,
      os.path.abspath(__file__), "_tmpfs_child", root, reference, result_file, *args
  ],
                 cwd=REPO,
                 env=environment(),
                 check=True)
  with open(result_file, encoding="utf-8") as f:
    return [Outcome(**r) for r in json.load(f)]


def _tmpfs_child(root: str, reference: str, result_file: str, args: tuple[str, ...]) -> None:
  """Inside `unshare -m`: the two real-disk scenarios on tmpfs mounts that vanish with it."""
  small = Outcome("disk too small for two checkpoints (real: tmpfs, preflight)")
  full = Outcome("disk full mid-run (real: tmpfs filled during training)")
  prepared = sum(
      os.path.getsize(f)
      for d in ("data", "tokenizer")
      for f in glob.glob(os.path.join(reference, d, "**"), recursive=True)
      if os.path.isfile(f))

  size = prepared + 300_000  # Room for the tokenized data, not for two checkpoints.
  workdir = _tmpfs(os.path.join(root, "small"), size)
  run = Run(workdir, args)
  rc = run.wait()
  text = run.output()
  run.close()
  small.injected = 1
  errors = error_lines(text)
  if rc != 2 or len(errors) != 1 or "bytes free on its disk" not in errors[0] or committed(
      workdir):
    small.wrong(f"exit {rc}: {text[-300:]!r}")
  small.finished = True  # Nothing to finish there.
  small.notes.append(f"{size:,}-byte tmpfs: exit 2 before training: `{errors[0][:110]}...`"
                     if errors else "")

  workdir = _tmpfs(os.path.join(root, "full"), 16 << 20)
  run = Run(workdir, args)
  run.wait_until(lambda: (newest(workdir) or 0) >= 30, poll=0.01)
  before = newest(workdir)
  filler = os.path.join(os.path.dirname(workdir), "filler")
  with open(filler, "wb", buffering=0) as f:  # Takes every free byte, as another process might.
    try:
      while True:
        f.write(b"\0" * 65536)
    except OSError as e:
      assert e.errno == errno.ENOSPC, e
  rc = run.wait()
  text = run.output()
  run.close()
  full.injected = 1
  errors = error_lines(text)
  error = errors[0] if len(errors) == 1 else ""
  if rc != 2 or "No space left on device" not in error:
    full.wrong(f"exit {rc}: {text[-800:]!r}")
  else:
    full.notes.append(f"exit 2: `{error[:200]}...`")
  if saving(workdir) or (newest(workdir) or 0) < before:
    full.wrong("a partial directory was left or a committed checkpoint lost", lost=1)
  os.remove(filler)
  _finish(full, workdir, reference, args)
  with open(result_file, "w", encoding="utf-8") as f:
    json.dump([dataclasses.asdict(full), dataclasses.asdict(small)], f)


def _tmpfs(mount: str, size: int) -> str:
  os.makedirs(mount)
  subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", mount], check=True)
  return os.path.join(mount, "run")


def _enospc_child(form: str, fail_at: int, argv: list[str]) -> None:
  """lm.main whose checkpoint save of step `fail_at` fails as on a full disk (this run only)."""
  sys.path.insert(0, REPO)
  from lm import runtime  # pylint: disable=g-import-not-at-top
  runtime.use_one_cpu_device_per_core()  # Before JAX is imported (by Orbax).
  import runpy  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  write = ocp.JsonCheckpointHandler._save_fn  # pylint: disable=protected-access

  async def failing_write(self, item, directory):
    if directory.parent.name.startswith(f"{fail_at}.") and directory.name.startswith("data"):
      if form == "oserror":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))
      raise ValueError(f"RESOURCE_EXHAUSTED: Error writing \"{directory}\": No space left on "
                       f"device [os_error_code=28]")
    return await write(self, item, directory)

  ocp.JsonCheckpointHandler._save_fn = failing_write  # pylint: disable=protected-access
  sys.argv = ["lm.main", *argv]
  runpy.run_module("lm.main", run_name="__main__", alter_sys=True)


SCENARIOS = ("sigkill", "sigterm", "sigint", "damaged", "enospc", "tmpfs", "unwritable")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--kills", type=int, default=20)
  parser.add_argument("--signals", type=int, default=3, help="SIGTERMs and SIGINTs each")
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--root", default="", help="scratch directory ('' = a new temporary one)")
  parser.add_argument("--only", default="", help=f"comma-separated, of {', '.join(SCENARIOS)}")
  flags = parser.parse_args()
  only = set(flags.only.split(",")) if flags.only else set(SCENARIOS)
  sys.path.insert(0, REPO)
  rng = random.Random(flags.seed)
  root = flags.root or tempfile.mkdtemp(prefix="lm_faults_")
  args = train_args(flags.steps)
  reference = os.path.join(root, "reference")
  began = time.perf_counter()
  startup = reference_run(reference, args)
  print(f"reference: {flags.steps} steps, first metrics after {startup:.1f}s", flush=True)
  rows = []

  def report(outcome: Outcome) -> None:
    rows.append(outcome)
    print(outcome.row(root), flush=True)

  if "sigkill" in only:
    report(sigkills(os.path.join(root, "kill"), reference, flags.kills, rng, startup, args))
  for name, signum in (("sigterm", signal.SIGTERM), ("sigint", signal.SIGINT)):
    if name in only:
      report(preemptions(os.path.join(root, name), reference, signum, flags.signals, rng, args))
  if "damaged" in only:
    report(damaged_latest(os.path.join(root, "damaged"), reference, rng, args))
  if "enospc" in only:
    report(disk_full_simulated(os.path.join(root, "enospc"), reference, args, flags.steps))
  if "tmpfs" in only:
    for outcome in disk_full_real(root, reference, args):
      report(outcome)
  if "unwritable" in only:
    report(unwritable(root, reference, args))
  print(f"\n{flags.steps}-step smoke runs, seed {flags.seed}, "
        f"{time.perf_counter() - began:.0f} s in all; root {root}\n")
  print("| fault | injected | survived | data lost | notes |")
  print("|---|---|---|---|---|")
  for outcome in rows:
    print(outcome.row(root))
  total = sum(r.lost for r in rows)
  print(f"\ndata lost in all: {total}")
  if not flags.root:
    shutil.rmtree(root, ignore_errors=True)
  sys.exit(1 if total else 0)


if __name__ == "__main__":
  if len(sys.argv) > 1 and sys.argv[1] == "_enospc_child":
    _enospc_child(sys.argv[2], int(sys.argv[3]), sys.argv[4:])
  elif len(sys.argv) > 1 and sys.argv[1] == "_tmpfs_child":
    sys.path.insert(0, REPO)
    _tmpfs_child(sys.argv[2], sys.argv[3], sys.argv[4], tuple(sys.argv[5:]))
  else:
    main()
