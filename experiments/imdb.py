"""IMDB movie-review sentiment (Maas et al. 2011): pretrain on the 50,000 unlabeled `unsup`
reviews (masked LM), then fine-tune a classifier on the labeled train split.

Data: imdb in the data root (`python -m lm.data.download imdb`). The official test split is
not in it; 10% of train (2,500 reviews, a fixed
shuffled split) is held out for validation and never trained on. Reviews are lower-cased. The
architecture is sst2.py's encoder (2 layers, width 128), pretrained on windows of 256 tokens and
fine-tuned on whole reviews (up to 1024 tokens; rotary positions have no length-bound table);
the classifier reads the mean of the token states.

  pretrain     masked LM on aclImdb/train/unsup
  finetune     the classifier, with --config.init_from=<pretrain workdir>
  no_pretrain  the same classifier from random initialization (the ablation)
  lora, linear_probe, frozen, smoke   as in sst2.py

Commands (2-core CPU; see BENCHMARKS.md):
  python -m lm.main --config=experiments/imdb.py:pretrain --workdir=runs/imdb_pretrain
  python -m lm.main --config=experiments/imdb.py:finetune --workdir=runs/imdb_finetune \\
      --config.init_from=runs/imdb_pretrain
Expected (2-core CPU, BENCHMARKS.md "Issue 4"): pretrain ~21 min (MLM loss 4.30), finetune
~28 min, held-out accuracy 88.3% (88.3% at step 700, 88.3% at the last step) in 49 min: the
issue's target (>= 88% within 60 minutes) by a thin margin; TF-IDF + logistic regression gets
89.9% on the same split.
"""

from experiments import sst2
from lm import defaults
from lm.data import data_root
from lm.experiment_args import parse_args

IMDB_TRAIN = (data_root.path("imdb", "aclImdb_train.tar.gz") +
              ":aclImdb/train/[np][eo][gs]/*.txt")


def get_config(arg: str | None = None):
  args = parse_args(arg, allowed=("pretrain", "finetune", "no_pretrain", "smoke") + sst2.METHODS)
  config = defaults.base_config()
  sst2.encoder(config)
  if sst2.stage(args, "imdb") == "pretrain":
    sst2.pretrain(config)
    config.data.source = sst2.IMDB_UNSUP
    config.model.max_len = 256
    config.train.update(steps=1200, batch_size=64)
  else:
    sst2.finetune(config, args)
    config.data.source = IMDB_TRAIN
    config.data.label_field = "@dir"
    config.data.labels = "neg,pos"
    config.data.valid_fraction = 0.1
    # Whole reviews (82% fit in 512 pieces, 18% are cut there); rotary positions carry over
    # from pretraining's 256.
    config.model.max_len = 1024
    config.train.update(steps=1050,
                        batch_size=32,
                        eval_every=350,
                        eval_batch_size=64,
                        checkpoint_every=350)
  if "smoke" in args:  # A few hundred reviews (ids 10-19 and 100-199) instead of all.
    sst2.smoke(config)
    config.data.source = config.data.source.replace("/*.txt", "/1?_*.txt").replace(
        "/[np][eo][gs]/*.txt", "/[np][eo][gs]/1??_*.txt")
  return config
