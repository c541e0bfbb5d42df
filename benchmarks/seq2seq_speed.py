"""Training speed of the Multi30k encoder–decoder recipe: this trainer against a PyTorch eager
`torch.nn.Transformer` of the same shape, side by side in one run, on the same batches.

Both sides train experiments/multi30k.py:cpu's model (3 + 3 pre-norm layers, width 256, 4 heads,
MLP 1024 with GELU, learned positions, one token embedding shared by source, target and output,
dropout 0.1, label smoothing 0.1, AdamW) on the batches the seq2seq task makes (length-bucketed
pairs, source and target padded to 16, 32 or 64). The PyTorch side runs `torch.nn.Transformer`
(batch_first, norm_first) with key-padding masks on both sides and a causal target mask. The
sides alternate in chunks of `--chunk_steps` steps after a warm-up over every bucket shape; the
table gives the median ms/step, the ratio and target tokens per second.

  XLA_FLAGS=--xla_force_host_platform_device_count=1 .venv/bin/python benchmarks/seq2seq_speed.py
  .venv/bin/python benchmarks/seq2seq_speed.py   (lm.main's default: one XLA device per core)

Needs the test requirements (torch) and the Multi30k data in the data root.
"""

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import finetune_speed  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import torch  # pylint: disable=g-import-not-at-top,wrong-import-position
from torch import nn  # pylint: disable=g-import-not-at-top,wrong-import-position


class TorchSeq2Seq(nn.Module):
  """Shared embedding + learned positions per side, nn.Transformer, tied output projection."""

  def __init__(self, cfg):
    super().__init__()
    D = cfg.embed_dim
    self.embed = nn.Embedding(cfg.vocab_size, D)
    self.source_positions = nn.Embedding(cfg.max_len, D)
    self.target_positions = nn.Embedding(cfg.max_len, D)
    self.dropout = nn.Dropout(cfg.dropout)
    self.transformer = nn.Transformer(d_model=D,
                                      nhead=cfg.num_heads,
                                      num_encoder_layers=cfg.num_layers,
                                      num_decoder_layers=cfg.decoder_layers,
                                      dim_feedforward=cfg.hidden_dim,
                                      dropout=cfg.dropout,
                                      activation="gelu",
                                      batch_first=True,
                                      norm_first=True)

  def forward(self, source, source_pad, target, target_pad):
    positions = lambda x: torch.arange(x.shape[1])[None, :]
    src = self.dropout(self.embed(source) + self.source_positions(positions(source)))
    tgt = self.dropout(self.embed(target) + self.target_positions(positions(target)))
    causal = nn.Transformer.generate_square_subsequent_mask(target.shape[1])
    hidden = self.transformer(src, tgt, tgt_mask=causal, src_key_padding_mask=source_pad,
                              tgt_key_padding_mask=target_pad, memory_key_padding_mask=source_pad,
                              tgt_is_causal=True)
    return hidden @ self.embed.weight.T


class TorchSide:
  """The PyTorch model, AdamW and an eager loop on the lm task's batches."""

  def __init__(self, cfg, train_cfg, label_smoothing: float):
    self.model = TorchSeq2Seq(cfg)
    self.model.train()
    self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=train_cfg.learning_rate,
                                       betas=(train_cfg.b1, train_cfg.b2),
                                       weight_decay=train_cfg.weight_decay)
    self.label_smoothing = label_smoothing

  def step(self, batch) -> None:
    tensor = lambda key: torch.from_numpy(batch[key].astype(np.int64))
    logits = self.model(tensor("inputs"), tensor("source_segments") == 0,
                        tensor("decoder_inputs"), tensor("target_segments") == 0)
    targets = torch.where(tensor("target_segments") > 0, tensor("targets"), -100)
    loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                       ignore_index=-100, label_smoothing=self.label_smoothing)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
    self.optimizer.step()
    self.optimizer.zero_grad(set_to_none=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--chunks", type=int, default=6)
  parser.add_argument("--chunk_steps", type=int, default=10)
  args = parser.parse_args()
  torch.set_num_threads(os.cpu_count() or 1)
  print(f"{os.cpu_count()} CPU cores; jax {jax.__version__} on {len(jax.devices())} devices; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
  config = finetune_speed.load_config("experiments/multi30k.py", "cpu", "")
  with tempfile.TemporaryDirectory() as workdir:
    lm_side = finetune_speed.LmSide(config, workdir)
  sampler = lm_side.task.train_batches(lm_side.layout.rows(config.train.batch_size))
  batches = [sampler.next_batch() for _ in range(args.chunk_steps * args.chunks)]
  sides = {
      "lm": lm_side,
      "torch.nn.Transformer": TorchSide(lm_side.task.model_config, config.train,
                                        config.task.label_smoothing),
  }
  for side in sides.values():  # Warm-up: compiles (lm) every pair of bucket lengths once.
    seen = set()
    for batch in batches:
      shapes = (batch["inputs"].shape, batch["targets"].shape)
      if shapes not in seen:
        seen.add(shapes)
        side.step(batch)
  times = finetune_speed.measure(sides, batches, args.chunks, args.chunk_steps)
  lm_ms = statistics.median(times["lm"])
  torch_ms = statistics.median(times["torch.nn.Transformer"])
  targets = np.mean([b["weights"].astype(bool).sum() for b in batches])
  ratios = [t / l for t, l in zip(times["torch.nn.Transformer"], times["lm"])]
  print("\n| recipe | target tokens/batch | lm ms/step | torch ms/step | lm speed / torch (median)"
        " | per chunk | target tokens/s lm / torch |\n|---|---|---|---|---|---|---|")
  print(f"| multi30k:cpu (batch {config.train.batch_size}) | {targets:.0f} | {lm_ms:.0f} | "
        f"{torch_ms:.0f} | {torch_ms / lm_ms:.2f}x | {min(ratios):.2f}-{max(ratios):.2f}x | "
        f"{1e3 * targets / lm_ms:.0f} / {1e3 * targets / torch_ms:.0f} |")


if __name__ == "__main__":
  main()
