"""Ablation (b): a Transformer against an LSTM language model at equal parameter count.

Two corpora, one recipe each (the arg), and two variants in each sweep:

  wikitext2    word-level WikiText-2 (Merity et al. 2016; wikitext2 in the data root,
               `python -m lm.data.download wikitext2`; the word tokenizer: 33,278 words,
               an <eos> per line), the papers' unit: perplexity = exp(total NLL / words, <eos>
               counted). Validation perplexity during training, test perplexity once at the
               end (config.data.test_source). The Shakespeare model's shape (4 layers, width
               128) with tied embeddings (4.26M of its 5.05M parameters are the embedding),
               context 64 words, batch 32, 250 steps (a quarter of an epoch).
  shakespeare  character-level Tiny Shakespeare: the `cpu` recipe of
               experiments/shakespeare_char.py (nanoGPT's 4 layers, width 128, context 64);
               bits per byte on the whole validation split.

  transformer  the recipe's decoder (rotary positions, LayerNorm, GELU)
  lstm         a 2-layer LSTM (Zaremba et al. 2014; AWD-LSTM's tied output, Merity et al.
               2017) with the same embedding width, its hidden width chosen so that it has as
               many parameters as the Transformer (lm.models.lstm.hidden_dim_for), learning
               rate 4e-3 (LSTMs take larger steps than Transformers), embedding init std 0.1

Both variants train for the same number of steps on the same batches; the budget is what a
2-core CPU gives in minutes, far from the hundreds of epochs behind the published numbers.

Commands (each sweep 2 variants x 3 seeds; results in experiments/results/lstm_*/):
  python -m lm.sweep --config=experiments/ablate_lstm.py:wikitext2 \
      --workdir=runs/ablate_lstm_wikitext2 --seeds=3 --metric=test/perplexity --parallel=2
  python -m lm.sweep --config=experiments/ablate_lstm.py:shakespeare \
      --workdir=runs/ablate_lstm_shakespeare --seeds=3 --metric=eval/bpb --parallel=2
One run by hand: python -m lm.main --config=experiments/ablate_lstm.py:wikitext2 --workdir=DIR
Expected (2-core CPU): see experiments/results/lstm_wikitext2/ and lstm_shakespeare/.
"""

import dataclasses

from experiments import shakespeare_char
from lm import defaults
from lm.data import data_root
from lm.data.tokenizer_base import NUM_SPECIAL
from lm.errors import UserError
from lm.experiment_args import parse_args, shrink_to_smoke
from lm.models import architecture, lstm
from lm.models.config import model_config_from

WIKITEXT2 = data_root.path("wikitext2", "tokens")
# Vocabularies with the special ids: WikiText-2's 33,278 words (<eos> included;
# tests/test_word_tokenizer.py checks it) and Tiny Shakespeare's 65 characters.
VOCAB_SIZES = {"wikitext2": 33_278 + NUM_SPECIAL, "shakespeare": 65 + NUM_SPECIAL}
WIKITEXT2_STEPS = 250
LSTM_LAYERS = 2
LSTM_LEARNING_RATE = 4e-3
# The embedding's init scale: at the Transformer's 0.02 (a norm rescales its inputs; the LSTM
# has none) the LSTM sat at the unigram loss for ~250 steps on some seeds, at 0.1 it does not.
LSTM_INIT_STD = 0.1


ALLOWED = ("wikitext2", "shakespeare", "smoke")


def get_config(arg: str | None = None):
  args = parse_args(arg, allowed=ALLOWED)
  corpus = _corpus(args)
  if corpus == "shakespeare":
    return shakespeare_char.get_config("cpu,smoke" if "smoke" in args else "cpu")
  config = defaults.base_config("tiny")
  config.data.update(source=f"{WIKITEXT2}/train.txt.gz",
                     valid_source=f"{WIKITEXT2}/valid.txt",
                     test_source=f"{WIKITEXT2}/test.txt",
                     tokenizer="word",
                     vocab_size=VOCAB_SIZES["wikitext2"])
  config.model.update(num_layers=4, num_heads=4, embed_dim=128, max_len=64, positions="rope",
                      mlp="gelu_exact", dropout=0.0)
  # 250 steps x 32 x 64 = 512k words (a quarter of an epoch): the 33k-word output layer makes
  # each token ~6x the Shakespeare model's work, and 6 runs must fit the CPU budget. The
  # validation perplexity is on the first 20 x 64 windows (82k words), the test on all of it.
  config.train.update(steps=WIKITEXT2_STEPS,
                      batch_size=32,
                      learning_rate=2e-3,
                      min_learning_rate=2e-4,
                      warmup_steps=25,
                      weight_decay=0.1,
                      eval_every=WIKITEXT2_STEPS,
                      eval_batches=20,
                      final_eval_batches=20,
                      checkpoint_every=WIKITEXT2_STEPS,
                      sample_prompt="")
  if "smoke" in args:
    shrink_to_smoke(config)
    config.data.update(source=f"{WIKITEXT2}/valid.txt", valid_source=f"{WIKITEXT2}/test.txt",
                       vocab_size=2000)
    config.train.final_eval_batches = 2
  return config


def _corpus(args: set[str]) -> str:
  """The corpus among the args (smoke alone means shakespeare)."""
  corpora = args & set(VOCAB_SIZES)
  if len(corpora) > 1 or not (corpora or "smoke" in args):
    raise UserError("--config=experiments/ablate_lstm.py:CORPUS needs one of wikitext2, "
                    "shakespeare")
  return corpora.pop() if corpora else "shakespeare"


def sweep(arg: str | None = None) -> list[dict]:
  config, args = get_config(arg), parse_args(arg, allowed=ALLOWED)
  # Smoke runs read other text: their LSTM's size is only near the Transformer's.
  vocab_size = config.data.vocab_size if "smoke" in args else VOCAB_SIZES[_corpus(args)]
  transformer = model_config_from(config.model, vocab_size)
  recurrent = dataclasses.replace(transformer, architecture="lstm", num_layers=LSTM_LAYERS)
  hidden = lstm.hidden_dim_for(recurrent, architecture.count_params(transformer))
  return [
      {"name": "transformer"},
      {
          "name": "lstm",
          "model.architecture": "lstm",
          "model.num_layers": LSTM_LAYERS,
          "model.lstm_hidden_dim": hidden,
          "model.init_std": LSTM_INIT_STD,
          "train.learning_rate": LSTM_LEARNING_RATE,
          "train.min_learning_rate": LSTM_LEARNING_RATE / 10,
      },
  ]
