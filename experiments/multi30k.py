"""English -> German translation: Multi30k (Elliott et al. 2016), an encoder–decoder from scratch.

Data: multi30k in the data root (lm/data/data_root.py): train.en / train.de, 29,000 image
captions line-aligned; val.en / val.de, 1,014. The test2016 split is not in it: translate it with
`lm.generate --input` (below) and score with sacreBLEU. Everything is selected on val.

  cpu      the <= 60-minute recipe for a 2-core CPU (tokenizer training included)
  (none)   the GPU recipe: a larger model, longer
  de_en    German -> English instead (with either)
  pretrain T5 span corruption of both sides' text (no pairs); fine-tune from it with
           --config.init_from=RUN --config.data.extra_ids=100 (its sentinel ids)
  smoke    seconds

Commands (DATA=${LM_DATA_DIR:-../shared/data}):
  XLA_FLAGS=--xla_force_host_platform_device_count=1 \\
      python -m lm.main --config=experiments/multi30k.py:cpu --workdir=runs/multi30k
  python -m lm.generate --workdir=runs/multi30k --input=$DATA/multi30k/val.en \\
      --output=runs/multi30k/val.pred.de
  python ../shared/tools/score.py bleu $DATA/multi30k/val.de runs/multi30k/val.pred.de
Seeds (sweep() is the recipe as is; runs/multi30k_seeds/baseline/seed<k>, a table of
mean +- std and 95% CI; experiments/ablate_decoding.py decodes these runs):
  XLA_FLAGS=--xla_force_host_platform_device_count=1 python -m lm.sweep \
      --config=experiments/multi30k.py:cpu --workdir=runs/multi30k_seeds --seeds=3 \
      --metric=eval/bleu
Expected (2-core CPU, measured): cpu in 51 min 53 s in all (tokenizer training, 4,400 steps,
four beam-4 evaluations), val BLEU 32.95 and chrF 55.54 (one seed; BENCHMARKS.md "Issue 24").
lm.generate decodes with the run's config.task.beam_size and length_penalty unless its flags
say otherwise. One XLA device is ~10% faster than lm.main's default of one per core for a
model this small (BENCHMARKS.md).
"""

from lm import defaults
from lm.data import data_root
from lm.experiment_args import parse_args, shrink_to_smoke

LANGS = ("en", "de")


def get_config(arg: str | None = None):
  args = parse_args(arg, allowed=("cpu", "de_en", "pretrain", "smoke"))
  source, target = ("de", "en") if "de_en" in args else ("en", "de")
  config = defaults.base_config()
  if "pretrain" in args:
    return _pretrain_config(config, args)
  config.task.kind = "seq2seq"
  config.task.seq2seq_metrics = "translation"
  config.task.label_smoothing = 0.1
  config.task.beam_size = 4
  config.task.length_penalty = 0.6
  config.data.source = data_root.path("multi30k", f"train.{source}")
  config.data.target = data_root.path("multi30k", f"train.{target}")
  config.data.valid_source = data_root.path("multi30k", f"val.{source}")
  config.data.valid_target = data_root.path("multi30k", f"val.{target}")
  config.data.tokenizer = "sentencepiece"  # One vocabulary for both languages (shared, tied).
  config.data.vocab_size = 8000
  config.model.update(architecture="encoder_decoder", norm_position="pre", positions="learned",
                      max_len=64, dropout=0.1)
  config.train.update(batch_size=64,
                      eval_batch_size=128,
                      learning_rate=1e-3,
                      min_learning_rate=1e-5,
                      schedule="cosine",
                      weight_decay=0.01,
                      b2=0.98,
                      keep_checkpoints=1,
                      best_metric="eval/bleu",
                      sample_prompt="")
  if "cpu" in args:
    config.model.update(num_layers=3, num_decoder_layers=3, num_heads=4, embed_dim=256,
                        mlp_dim=1024)
    # ~0.62 s a step on one XLA device of a 2-core CPU: 4,400 steps (9.7 epochs) and four
    # evaluations (beam 4 over val, ~70 s each) in ~52 min.
    config.train.update(steps=4400, warmup_steps=400, learning_rate=1.5e-3, eval_every=1100,
                        checkpoint_every=1100, log_every=100, eval_examples=0)
  else:
    config.model.update(num_layers=6, num_decoder_layers=6, num_heads=8, embed_dim=512,
                        mlp_dim=2048, dropout=0.2)
    config.train.update(batch_size=128, steps=20000, warmup_steps=1000, eval_every=2000,
                        checkpoint_every=2000, log_every=200)
  if "smoke" in args:
    shrink_to_smoke(config)
    config.data.vocab_size = 500
    config.train.eval_examples = 8
    config.task.max_new_tokens = 8
  return config


def _pretrain_config(config, args):
  """T5 span corruption of the training text of both languages (no pairs), an encoder–decoder
  as the cpu recipe's, with 100 sentinel ids after the vocabulary."""
  config.task.kind = "span_corruption"
  config.data.source = ",".join(data_root.path("multi30k", f"train.{lang}") for lang in LANGS)
  config.data.valid_source = ",".join(data_root.path("multi30k", f"val.{lang}") for lang in LANGS)
  config.data.txt_unit = "line"
  config.data.tokenizer = "sentencepiece"
  config.data.vocab_size = 8000
  config.data.extra_ids = 100
  config.model.update(architecture="encoder_decoder", norm_position="pre", positions="learned",
                      max_len=64, dropout=0.1, num_layers=3, num_decoder_layers=3, num_heads=4,
                      embed_dim=256, mlp_dim=1024)
  config.train.update(batch_size=64, steps=2000, warmup_steps=200, learning_rate=1.5e-3,
                      min_learning_rate=1e-5, weight_decay=0.01, b2=0.98, eval_every=500,
                      checkpoint_every=500, keep_checkpoints=1, sample_prompt="")
  if "smoke" in args:
    shrink_to_smoke(config)
    config.data.vocab_size = 500
  return config


def sweep(arg: str | None = None) -> list[dict]:
  """The recipe as it is, for `lm.sweep --seeds=N` (seeds are the only variation)."""
  del arg
  return [{"name": "baseline"}]
