"""Ablation (a): pretraining vs none for SST-2 fine-tuning; full vs frozen vs LoRA vs linear probe.

The BERT-style encoder that experiments/sst2.py used when these results were measured (4 layers,
width 256, 8k SentencePiece pieces, 5.2M parameters; sst2.py's is now narrower), in two steps:

1. `pretrain`: masked LM on IMDB `unsup` + SST-2 train sentences, as sst2.py:pretrain but 250
   steps (2M tokens, ~11 minutes), so that the whole ablation fits 45 minutes of this CPU.
2. the sweep: 300 steps of fine-tuning (9,600 sentences, batch 32, linear decay) per variant
   and seed, evaluated once at the end on SST-2 dev (872 sentences; no checkpoint is chosen on
   it and no setting was tuned on it):

  no_pretrain   the same classifier from random initialization, every parameter trained
                (lr 5e-4, as sst2.py:no_pretrain; its own tokenizer, trained on SST-2)
  full          from the pretrained encoder, every parameter trained (lr 2e-4)
  frozen        embeddings and the bottom 2 of 4 blocks frozen (lr 2e-4)
  lora          LoRA r=8, alpha 16 on the attention projections, the head trained (lr 1e-3)
  linear_probe  the head only (lr 1e-2)

Commands (the pretraining, then 5 variants x 3 seeds; results in
experiments/results/finetuning/):
  python -m lm.main --config=experiments/ablate_finetuning.py:pretrain \
      --workdir=runs/ablate_finetuning_pretrain
  python -m lm.sweep --config=experiments/ablate_finetuning.py \
      --workdir=runs/ablate_finetuning --seeds=3 --metric=eval/accuracy --parallel=2
(the sweep's variants read the pretrained encoder from runs/ablate_finetuning_pretrain).
Expected (2-core CPU): pretraining ~11 minutes, the sweep ~19 minutes (two runs at a time); the
measured table is in experiments/results/finetuning/.

  electra   the rerun with the best pretraining issue 26 found: sst2.py's encoder (2 layers,
            width 128) pretrained by ELECTRA (ablate_electra.py:pretrain_electra, ~28 min), and
            sst2.py's whole fine-tuning recipe (up to 3,600 steps, the best checkpoint on 5% of
            SST-2 train held out); dev once per run with lm.predict. The same five variants
            (frozen: embeddings + the bottom 1 of 2 blocks; learning rates as sst2.py's).
  python -m lm.main --config=experiments/ablate_electra.py:pretrain_electra \
      --workdir=runs/ablate_electra_electra
  python -m lm.sweep --config=experiments/ablate_finetuning.py:electra \
      --workdir=runs/ablate_finetuning_electra --seeds=3 --metric=eval/accuracy --parallel=2
  python -m lm.predict --workdir=runs/ablate_finetuning_electra/VARIANT/seedK \
      --input=${LM_DATA_DIR:-../shared/data}/sst2/dev.tsv --text_column=sentence \
      --label_column=label --output=runs/ablate_finetuning_electra/VARIANT/seedK/dev.tsv
Expected (electra; experiments/results/finetuning_electra/): pretraining ~30 min, the sweep ~45
min (two at a time); SST-2 dev %, 3 seeds: no_pretrain 81.1 +- 0.8, full 80.8 +- 0.3, frozen
58.4 +- 1.8, LoRA 69.3 +- 1.3, linear probe 53.7 +- 2.6: pretraining does not pay at this budget.
"""

from experiments import ablate_electra, sst2
from lm.data import data_root
from lm.experiment_args import parse_args

PRETRAIN_WORKDIR = "runs/ablate_finetuning_pretrain"
ELECTRA_WORKDIR = ablate_electra.ELECTRA_WORKDIR  # The `electra` recipe's pretraining.
# sst2.py's recipe when the recorded results were measured: its encoder, pretraining batch,
# fine-tuning learning rate and classifier input.
RECORDED_MODEL = dict(num_layers=4, num_heads=4, embed_dim=256)
RECORDED_PRETRAIN_BATCH = 64
RECORDED_FINETUNE_LR = 2e-4
PRETRAIN_STEPS = 250
FINETUNE_STEPS = 300
ARGS = ("pretrain", "electra", "smoke")


def get_config(arg: str | None = None):
  args = parse_args(arg, allowed=ARGS)
  smoke = ",smoke" if "smoke" in args else ""
  if "electra" in args:  # sst2.py's encoder and fine-tuning; the sweep gives the ELECTRA run.
    return sst2.get_config("finetune" + smoke)
  if "pretrain" in args:
    config = sst2.get_config("pretrain" + smoke)
    if not smoke:
      config.model.update(RECORDED_MODEL)
      config.train.update(steps=PRETRAIN_STEPS, batch_size=RECORDED_PRETRAIN_BATCH,
                          warmup_steps=25, eval_every=PRETRAIN_STEPS,
                          checkpoint_every=PRETRAIN_STEPS)
    return config
  config = sst2.get_config("finetune" + smoke)
  config.task.pooling = "cls"
  if not smoke:
    config.model.update(RECORDED_MODEL)
    config.data.valid_source = data_root.path("sst2", "dev.tsv")
    config.train.update(steps=FINETUNE_STEPS,
                        learning_rate=RECORDED_FINETUNE_LR,
                        warmup_steps=30,
                        eval_every=FINETUNE_STEPS,
                        checkpoint_every=FINETUNE_STEPS,
                        early_stopping_patience=0)
  return config


def sweep(arg: str | None = None) -> list[dict]:
  """The same variants for every recipe: the bottom half of the blocks freezes in `frozen`."""
  config = get_config(arg)
  pretrained = {"init_from": ELECTRA_WORKDIR if "electra" in parse_args(arg, allowed=ARGS)
                else PRETRAIN_WORKDIR}
  return [
      {"name": "no_pretrain", "train.learning_rate": 5e-4, "init_required": False},
      {"name": "full", **pretrained},
      {"name": "frozen", **pretrained, "finetune.freeze_embeddings": True,
       "finetune.freeze_layers": config.model.num_layers // 2},
      {"name": "lora", **pretrained, "finetune.method": "lora", "train.learning_rate": 1e-3},
      {"name": "linear_probe", **pretrained, "finetune.method": "linear_probe",
       "train.learning_rate": 1e-2},
  ]
