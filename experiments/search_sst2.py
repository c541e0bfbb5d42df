"""Hyper-parameter search: TPE over the SST-2 fine-tuning of sst2.py, 5-fold cross-validated on
SST-2 train; dev measured once, for the chosen configuration and for the default.

Each trial fine-tunes the pretrained encoder (sst2.py:pretrain's run) on 4/5 of SST-2 train and
validates on the remaining fifth, for each of the 5 folds (config.data.folds, stratified, the
same in every trial); its value is the mean validation accuracy. The runs are short (300 steps
of the trial's batch size) so that 20 trials x 5 folds fit the 90-minute budget of a 2-core CPU;
Optuna's median pruner stops trials whose running mean over folds falls behind. The search
space: learning rate (log 1e-4..3e-3), warmup steps (0..100), dropout (0..0.3), weight decay
(log 1e-4..0.1) and batch size (16, 32, 64).

  (no arg)  the fine-tuning a trial runs (lm.sweep adds --config.data.folds/fold and the
            trial's values); as it is, with sst2.py's values, it is the default measured on dev
  smoke     seconds (no pretrained encoder)

Commands (2-core CPU; the pretraining first: sst2.py):
  python -m lm.main --config=experiments/sst2.py:pretrain --workdir=runs/sst2_pretrain
  python -m lm.sweep --config=experiments/search_sst2.py --workdir=runs/search_sst2 \\
      --search=tpe --trials=20 --folds=5 --metric=eval/accuracy --parallel=2
  # The default on the same folds (its mean and CI beside the best trial's)
  python -m lm.sweep --config=experiments/search_sst2.py --workdir=runs/search_sst2_default \\
      --seeds=1 --folds=5 --metric=eval/accuracy --parallel=2
  # Dev, once each: the chosen configuration and the default, trained on all of train
  python -m lm.main --config=runs/search_sst2/best_config.py --workdir=runs/search_sst2_best_dev \\
      --config.data.valid_source=${LM_DATA_DIR:-../shared/data}/sst2/dev.tsv
  python -m lm.main --config=experiments/search_sst2.py --workdir=runs/search_sst2_default_dev \\
      --config.data.valid_source=${LM_DATA_DIR:-../shared/data}/sst2/dev.tsv
Expected (2-core CPU; experiments/results/search_sst2/): the search 36 min (12 trials complete,
8 pruned); 5-fold accuracy of the best trial 81.89 +- 0.35 [95% CI +-0.43] against the default's
76.15 +- 0.51 [+-0.63]; dev, once each: 78.67% (chosen) and 76.26% (default).
"""

from experiments import sst2
from lm.experiment_args import parse_args

PRETRAINED = "runs/sst2_pretrain"
TRIAL_STEPS = 300


def get_config(arg: str | None = None):
  args = parse_args(arg, allowed=("smoke",))
  if "smoke" in args:
    return sst2.get_config("no_pretrain,smoke")
  config = sst2.get_config("finetune")
  config.init_from = PRETRAINED
  # One evaluation, at the end: with --folds the pruner reads each fold's final accuracy (the
  # running mean over folds), not the evaluations inside a fold.
  config.train.update(steps=TRIAL_STEPS, eval_every=TRIAL_STEPS,
                      checkpoint_every=TRIAL_STEPS, early_stopping_patience=0)
  return config


def search_space(arg: str | None = None) -> dict:
  del arg  # The same space for every recipe.
  return {
      "train.learning_rate": ("loguniform", 1e-4, 3e-3),
      "train.warmup_steps": ("int", 0, 100),
      "model.dropout": ("uniform", 0.0, 0.3),
      "train.weight_decay": ("loguniform", 1e-4, 0.1),
      "train.batch_size": ("choice", [16, 32, 64]),
  }


def sweep(arg: str | None = None) -> list[dict]:
  """The default alone: `lm.sweep --folds=5 --seeds=1` cross-validates it on the search's folds,
  for its fold mean and CI beside the best trial's."""
  del arg
  return [{"name": "default"}]
