"""Dialogue summarization: SAMSum (Gliwa et al. 2019), an encoder–decoder from scratch.

Data: samsum in the data root (lm/data/data_root.py): train.json.gz, 14,732 chat dialogues with
a written summary each; val.json, 818 (JSON lists of {"id", "dialogue", "summary"}; turns
separated by line breaks). The test split is not in it: summarize it with `lm.generate --input`
(below) and score ROUGE. Everything is selected on val.

  cpu      a <= 60-minute recipe for a 2-core CPU (tokenizer training included)
  (none)   the GPU recipe: a larger model, longer
  smoke    seconds

Commands (DATA=${LM_DATA_DIR:-../shared/data}):
  XLA_FLAGS=--xla_force_host_platform_device_count=1 \\
      python -m lm.main --config=experiments/samsum.py:cpu --workdir=runs/samsum
  python -m lm.generate --workdir=runs/samsum --input=$DATA/samsum/val.json \\
      --text_field=dialogue --output=runs/samsum/val.pred.txt
  python ../shared/tools/score.py rouge1 $DATA/samsum/val.json runs/samsum/val.pred.txt
  python -m lm.evaluation.lead_baseline --input=$DATA/samsum/val.json
Expected (2-core CPU): the Lead-3 baseline (our code) scores val ROUGE-1/2/L 32.53 / 10.07 /
25.35 (the paper's test: 31.4 / 8.7 / 29.4 with its ROUGE tool). The cpu recipe, measured:
val ROUGE-1 14.2 at its best evaluation (step 800; 13.1 at the end, greedy, 200 dialogues) in
~50 minutes: far below Lead-3; the from-scratch model has not learned to read the dialogue in
2.6 epochs (BENCHMARKS.md "Issue 24"). Fine-tune an imported BART or T5 instead
(`lm.convert --from_hf`, then --config.init_from=RUN --config.init_architecture=adopt).
"""

from lm import defaults
from lm.data import data_root
from lm.experiment_args import parse_args, shrink_to_smoke


def get_config(arg: str | None = None):
  args = parse_args(arg, allowed=("cpu", "smoke"))
  config = defaults.base_config()
  config.task.kind = "seq2seq"
  config.task.seq2seq_metrics = "summarization"
  config.task.label_smoothing = 0.1
  config.task.beam_size = 4
  config.task.length_penalty = 1.0
  config.task.max_new_tokens = 64
  config.data.source = data_root.path("samsum", "train.json.gz")
  config.data.valid_source = data_root.path("samsum", "val.json")
  config.data.source_field = "dialogue"
  config.data.target_field = "summary"
  config.data.tokenizer = "sentencepiece"
  config.data.vocab_size = 8000
  config.model.update(architecture="encoder_decoder", norm_position="pre", positions="learned",
                      max_len=256, dropout=0.1)
  config.train.update(eval_batch_size=64,
                      learning_rate=1e-3,
                      min_learning_rate=1e-5,
                      schedule="cosine",
                      weight_decay=0.01,
                      b2=0.98,
                      keep_checkpoints=1,
                      best_metric="eval/rouge1",
                      sample_prompt="")
  if "cpu" in args:
    config.model.update(num_layers=3, num_decoder_layers=3, num_heads=4, embed_dim=256,
                        mlp_dim=1024)
    config.train.update(batch_size=32, steps=1200, warmup_steps=120, eval_every=400,
                        checkpoint_every=400, log_every=50, eval_examples=200)
    config.task.beam_size = 1  # Greedy during training; lm.generate --beam_size=4 after.
  else:
    config.model.update(num_layers=6, num_decoder_layers=6, num_heads=8, embed_dim=512,
                        mlp_dim=2048, dropout=0.2)
    config.train.update(batch_size=64, steps=10000, warmup_steps=500, eval_every=1000,
                        checkpoint_every=1000, log_every=100)
  if "smoke" in args:
    shrink_to_smoke(config)
    config.model.max_len = 32
    config.data.vocab_size = 500
    config.train.eval_examples = 8
    config.task.max_new_tokens = 8
  return config
