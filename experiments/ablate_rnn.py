"""Ablation: recurrent baselines against the Transformer at equal parameters, as a classifier
(SST-2) and a tagger (WNUT-17).

Five encoders from random weights, each with the Transformer's parameter count (the recurrent
ones get the largest lstm_hidden_dim within it: lm.models.lstm.hidden_dim_for, counted with
the recipe's vocabulary size and head):

  transformer   the recipe's encoder (sst2.py: 2 layers, width 128; wnut17.py:scratch: 4 x 256)
  lstm, gru     unidirectional (causal=True): the classifier reads the last state
  bilstm, bigru bidirectional (causal=False): the classifier reads the mean state
Each trains as the recipe does (sst2.py:no_pretrain, 5% of SST-2 train held out for the best
checkpoint; wnut17.py:scratch, entity F1 on dev), 3 seeds, one lm.sweep command per task.

  (no arg) / sst2   SST-2 classification, eval/accuracy
  wnut17            WNUT-17 tagging, eval/f1
  smoke             seconds (SST-2)

Commands (2-core CPU; results under experiments/results/rnn_sst2/, rnn_wnut17/):
  python -m lm.sweep --config=experiments/ablate_rnn.py --workdir=runs/ablate_rnn_sst2 \\
      --seeds=3 --metric=eval/accuracy
  python -m lm.sweep --config=experiments/ablate_rnn.py:wnut17 --workdir=runs/ablate_rnn_wnut17 \\
      --seeds=3 --metric=eval/f1
One run by hand: python -m lm.main --config=experiments/ablate_rnn.py --workdir=DIR \\
      --config.model.architecture=gru --config.model.lstm_hidden_dim=H ...
Expected (2-core CPU; experiments/results/rnn_sst2/): SST-2, 3-4.5 min per run, 60 min in all,
held-out accuracy at 1.41M parameters: Transformer 87.7 +- 0.2, GRU 87.6 +- 0.4, LSTM 87.5 +- 0.1,
BiGRU 87.2 +- 0.1, BiLSTM 87.0 +- 0.2 (%, 3 seeds). WNUT-17 (experiments/results/rnn_wnut17/):
5-7 min per run, 88 min in all, dev entity F1 at 4.18M parameters: Transformer 11.7 +- 1.5, BiGRU
11.4 +- 0.7, LSTM, GRU and BiLSTM 0 (they stay at the all-O answer in 1,060 steps).
The parameter counts are in each run's log and in results.md.
"""

import dataclasses

from experiments import sst2, wnut17
from lm.experiment_args import parse_args
from lm.models import architecture, lstm
from lm.models.config import model_config_from

RECURRENT = {"lstm": ("lstm", False), "gru": ("gru", False), "bilstm": ("lstm", True),
             "bigru": ("gru", True)}


def get_config(arg: str | None = None):
  args = parse_args(arg, allowed=("sst2", "wnut17", "smoke"))
  if "wnut17" in args and "smoke" not in args:
    return wnut17.get_config("scratch")
  return sst2.get_config("no_pretrain" + (",smoke" if "smoke" in args else ""))


def sweep(arg: str | None = None) -> list[dict]:
  config = get_config(arg)
  tagger = config.task.kind == "token_classification"
  # The Transformer's count with a 2-class (SST-2) or 13-tag (WNUT-17, IOB2) head.
  head = dict(num_classes=13 if tagger else 2, pooling="none" if tagger else config.task.pooling)
  transformer = model_config_from(config.model, config.data.vocab_size, **head)
  budget = architecture.count_params(transformer)
  variants = [{"name": "transformer"}]
  for name, (cell, bidirectional) in RECURRENT.items():
    pooling = "none" if tagger else ("mean" if bidirectional else "last")
    cfg = dataclasses.replace(transformer, architecture=cell, bidirectional=bidirectional,
                              causal=not bidirectional, pooling=pooling)
    variants.append({"name": name, "model.architecture": cell,
                     "model.bidirectional": bidirectional, "model.causal": not bidirectional,
                     "model.lstm_hidden_dim": lstm.hidden_dim_for(cfg, budget),
                     **({} if tagger else {"task.pooling": pooling})})
  return variants
