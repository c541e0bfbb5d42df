"""The best configuration of the search in this directory (eval/accuracy = 0.8189):
experiments/search_sst2.py with the values below.

  python -m lm.main --config=runs/search_sst2/best_config.py --workdir=DIR
"""

from lm import config_file
from lm.sweep import plan

SEARCHED = 'experiments/search_sst2.py'
ARG = ''
BEST = {   'model.dropout': 0.21273073282027022,
    'train.batch_size': 64,
    'train.learning_rate': 0.0021359220740306503,
    'train.warmup_steps': 59,
    'train.weight_decay': 0.0012886872401096474}


def get_config(arg=None):
  config = config_file.load(SEARCHED + ":" + (arg or ARG) if (arg or ARG) else SEARCHED)
  for key, value in BEST.items():
    plan.set_key(config, key, value, __file__)
  return config
