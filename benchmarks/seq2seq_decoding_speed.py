"""Beam-search decoding speed: this project's jitted decoder against transformers' `generate` on
the same imported Marian model, side by side in one run.

The model has OPUS-MT en-de's shape (`MarianMTModel`: 6 + 6 post-norm layers, width 512, 8
heads, MLP 2048 with SiLU, sinusoidal positions, vocabulary 58,101), random weights, imported
with `lm.convert`'s importer. Its EOS logit is pushed down, so that both sides decode exactly
`--new_tokens` steps for every hypothesis (a random model would otherwise stop at arbitrary
points). The sources are `--batch` Multi30k val sentences' lengths (words x 1.3, as
SentencePiece pieces) filled with random ids. Each side decodes the batch with beam 4 (no
length penalty, greedy-equal settings) after one warm-up call (compilation on this side), then
`--repeats` timed calls; the table gives the median seconds per batch, the ratio and new tokens
per second (batch x new tokens / time).

  XLA_FLAGS=--xla_force_host_platform_device_count=1 .venv/bin/python \\
      benchmarks/seq2seq_decoding_speed.py

Needs the test requirements (torch, transformers).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import tokenizers  # pylint: disable=g-import-not-at-top,wrong-import-position
import torch  # pylint: disable=g-import-not-at-top,wrong-import-position
import transformers  # pylint: disable=g-import-not-at-top,wrong-import-position
from tokenizers import models  # pylint: disable=g-import-not-at-top,wrong-import-position

from lm import seq2seq_decoding  # pylint: disable=g-import-not-at-top,wrong-import-position
from lm.convert.importer import import_hf  # pylint: disable=g-import-not-at-top,wrong-import-position
from lm.data import data_root  # pylint: disable=g-import-not-at-top,wrong-import-position
from lm.models.encoder_decoder import EncoderDecoder  # pylint: disable=g-import-not-at-top,wrong-import-position
from lm.training import checkpoints  # pylint: disable=g-import-not-at-top,wrong-import-position

VOCAB, PAD, EOS = 58101, 58100, 0  # OPUS-MT en-de: </s> is 0, <pad> the last id.


def marian(seed: int) -> transformers.MarianMTModel:
  config = transformers.MarianConfig(vocab_size=VOCAB, decoder_vocab_size=VOCAB, d_model=512,
                                     encoder_layers=6, decoder_layers=6,
                                     encoder_attention_heads=8, decoder_attention_heads=8,
                                     encoder_ffn_dim=2048, decoder_ffn_dim=2048,
                                     max_position_embeddings=512, activation_function="swish",
                                     scale_embedding=True, pad_token_id=PAD, eos_token_id=EOS,
                                     decoder_start_token_id=PAD, forced_eos_token_id=None)
  torch.manual_seed(seed)
  model = transformers.MarianMTModel(config).eval()
  with torch.no_grad():
    model.final_logits_bias[0, EOS] = -1e4
  return model


def write_tokenizer(directory: str) -> None:
  """A word-level tokenizer.json over the model's ids (import needs one; the benchmark feeds ids)."""
  vocab = {"</s>": EOS, "<unk>": 1, **{f"w{i}": i for i in range(2, PAD)}, "<pad>": PAD}
  tokenizer = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
  tokenizer.save(os.path.join(directory, "tokenizer.json"))
  with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
    f.write('{"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}')


def sources(batch: int, seed: int) -> list[list[int]]:
  lines = open(data_root.path("multi30k", "val.en"), encoding="utf-8").read().splitlines()
  rng = np.random.default_rng(seed)
  lengths = [max(2, round(1.3 * len(line.split()))) for line in lines[:batch]]
  return [[*rng.integers(2, PAD, n - 1).tolist(), EOS] for n in lengths]


def timed(fn, repeats: int) -> tuple[float, object]:
  fn()  # Warm-up (compilation).
  times, out = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times), out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--beam_size", type=int, default=4)
  parser.add_argument("--new_tokens", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--threads", type=int, default=os.cpu_count())
  args = parser.parse_args()
  torch.set_num_threads(args.threads)
  model = marian(0)
  batch = sources(args.batch, 0)
  with tempfile.TemporaryDirectory() as directory:
    model.save_pretrained(os.path.join(directory, "hf"))
    write_tokenizer(os.path.join(directory, "hf"))
    import_hf(os.path.join(directory, "hf"), os.path.join(directory, "run"))
    cfg, params, _ = checkpoints.load_for_inference(os.path.join(directory, "run"))
  ours_model = EncoderDecoder(cfg)

  def ours():
    return seq2seq_decoding.decode_batch(ours_model, params, batch, bos_id=PAD, eos_id=EOS,
                                         pad_id=PAD, max_new_tokens=args.new_tokens,
                                         beam_size=args.beam_size, length_penalty=0.0)

  width = max(map(len, batch))
  input_ids = torch.full((len(batch), width), PAD)
  mask = torch.zeros((len(batch), width), dtype=torch.long)
  for row, ids in enumerate(batch):
    input_ids[row, :len(ids)], mask[row, :len(ids)] = torch.tensor(ids), 1

  def theirs():
    with torch.no_grad():
      return model.generate(input_ids=input_ids, attention_mask=mask, num_beams=args.beam_size,
                            max_new_tokens=args.new_tokens, do_sample=False, length_penalty=0.0,
                            early_stopping=True)

  our_time, our_out = timed(ours, args.repeats)
  their_time, their_out = timed(theirs, args.repeats)
  same = sum(o == t[1:].tolist()[:len(o)] for o, t in zip(our_out, their_out))
  tokens = len(batch) * args.new_tokens
  print(f"Marian {cfg.num_layers}+{cfg.decoder_layers} layers, width {cfg.embed_dim}, vocab "
        f"{cfg.vocab_size}; batch {len(batch)}, beam {args.beam_size}, {args.new_tokens} new "
        f"tokens, torch threads {args.threads}; outputs equal in {same}/{len(batch)} rows")
  print("| decoder | s / batch | new tokens/s | speed-up |")
  print("|---|---|---|---|")
  print(f"| transformers generate (PyTorch eager) | {their_time:.2f} | {tokens / their_time:.0f} "
        f"| 1.00x |")
  print(f"| lm (jitted beam search, KV cache) | {our_time:.2f} | {tokens / our_time:.0f} | "
        f"{their_time / our_time:.2f}x |")


if __name__ == "__main__":
  main()
