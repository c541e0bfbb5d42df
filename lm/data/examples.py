"""Records -> token arrays for sequence classification and supervised fine-tuning (SFT).

Classification (one label per text, or per pair of texts a, b):
  encoder (causal=False): [CLS] text [SEP]   the classifier reads the CLS position
                          [CLS] a [SEP] b [SEP], token types 0 up to the first [SEP], then 1
  decoder (causal=True):  text [EOS]         the classifier reads the last (EOS) position, the
                          a [SEP] b [EOS]    one token that has seen the whole text
  Long texts lose text tokens from the end (a pair: the longer text first, as Hugging Face's
  'longest_first'); the special tokens always stay.

SFT (one prompt -> response pair):
  tokens = [BOS] prompt response [EOS]; the model reads inputs = tokens[:-1] and predicts
  targets = tokens[1:] (the shift happens in `buckets.sft_batch`). `loss_mask` is aligned with
  `tokens`: loss_mask[i] says whether predicting token i counts, i.e. token i is a response
  token or the final EOS; so the target weights are loss_mask[1:]. `max_len` bounds the model's
  input length, len(tokens) - 1. Too long: prompt tokens are dropped from the left (the text
  nearest the response stays); if the response alone does not fit, the prompt is dropped and the
  response loses tokens from its end (EOS stays).
"""

import dataclasses
from typing import Sequence

import numpy as np

from lm.data import setting_names
from lm.data.labels import LabelSet
from lm.data.reader import Record
from lm.data.tokenizer_base import PAD_ID, Tokenizer
from lm.errors import UserError

NO_LABEL = -1


@dataclasses.dataclass
class ClassificationExamples:
  """Token sequences (int32, specials included) and their class ids (-1 = no label)."""
  tokens: list[np.ndarray]
  labels: np.ndarray  # int32 [N]
  num_truncated: int = 0  # How many texts lost tokens to max_len.
  pad_id: int = PAD_ID  # The tokenizer's padding id, for batches.
  # Token types (0 = first text, 1 = second) of sentence pairs; None for single texts.
  token_types: list[np.ndarray] | None = None
  # float32 [N, C]: a distillation teacher's logits (lm/tasks/distillation.py), and [N, D] its
  # pooled vectors (hidden-state transfer).
  teacher_logits: np.ndarray | None = None
  teacher_hidden: np.ndarray | None = None

  def __len__(self) -> int:
    return len(self.tokens)

  @property
  def lengths(self) -> np.ndarray:
    """int64 [N]: the number of tokens of every example."""
    return np.array([len(t) for t in self.tokens], dtype=np.int64)


def classification_examples(records: Sequence[Record], tokenizer: Tokenizer,
                            label_set: LabelSet | None, *, max_len: int,
                            causal: bool) -> ClassificationExamples:
  """Encodes the "text" (and "text_pair") of every record; labels via `label_set` (-1 without
  label / set)."""
  ids = tokenizer.special_ids
  pairs = any("text_pair" in record.values for record in records)
  num_special = (1 if causal else 2) + pairs
  _check_max_len(max_len, num_special + 1 + pairs)
  max_text = max_len - num_special
  tokens, types, labels, num_truncated = [], [], [], 0
  for record in records:
    if "text" not in record.values:
      raise UserError(f"{record.where}: no text ({setting_names.name('text_field')})")
    if pairs and "text_pair" not in record.values:
      raise UserError(f"{record.where}: no second text (config.data.text_pair_field)")
    text_ids = tokenizer.encode_array(record.values["text"]).astype(np.int32, copy=False)
    pair_ids = (tokenizer.encode_array(record.values["text_pair"]).astype(np.int32, copy=False)
                if pairs else text_ids[:0])
    if len(text_ids) + len(pair_ids) > max_text:
      text_ids, pair_ids = truncate_longest_first(text_ids, pair_ids, max_text)
      num_truncated += 1
    first = [text_ids] if causal else [[ids.cls], text_ids]
    first = np.concatenate(first + [[ids.sep]] if pairs else first)
    second = np.concatenate([pair_ids, [ids.eos] if causal else [ids.sep]]) if pairs else (
        np.array([ids.eos if causal else ids.sep]))
    tokens.append(np.concatenate([first, second]).astype(np.int32))
    types.append(np.repeat(np.int32([0, int(pairs)]), [len(first), len(second)]))
    label = record.values.get("label")
    if label is None or label_set is None:
      labels.append(NO_LABEL)
    else:
      labels.append(label_set.index(label, record.where))
  return ClassificationExamples(tokens, np.array(labels, dtype=np.int32), num_truncated, ids.pad,
                                types if pairs else None)


def truncate_longest_first(a: np.ndarray, b: np.ndarray,
                           budget: int) -> tuple[np.ndarray, np.ndarray]:
  """`a` and `b` cut from their ends to `budget` tokens together, one token at a time from the
  longer one (from `b` on a tie), as Hugging Face's truncation='longest_first'."""
  excess = len(a) + len(b) - budget
  if excess <= 0:
    return a, b
  # Cut the longer down to the shorter's length, then alternate (b first when equal).
  gap = min(abs(len(a) - len(b)), excess)
  len_a, len_b = (len(a) - gap, len(b)) if len(a) > len(b) else (len(a), len(b) - gap)
  rest = excess - gap
  len_a, len_b = len_a - rest // 2, len_b - (rest - rest // 2)
  return a[:len_a], b[:len_b]


def sft_examples(records: Sequence[Record], tokenizer: Tokenizer, *,
                 max_len: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """(tokens int32 [L], loss_mask bool [L]) per record, L - 1 <= max_len (see module doc)."""
  _check_max_len(max_len, 2)
  budget = max_len - 1  # Prompt + response tokens; BOS and EOS take the other two of L.
  ids = tokenizer.special_ids
  examples = []
  for record in records:
    if "response" not in record.values:
      raise UserError(f"{record.where}: no response (config.data.response_field)")
    prompt_ids = tokenizer.encode_array(record.values.get("prompt", ""))
    response_ids = tokenizer.encode_array(record.values["response"])
    if len(response_ids) >= budget:
      prompt_ids, response_ids = prompt_ids[:0], response_ids[:budget]
    elif len(prompt_ids) + len(response_ids) > budget:
      prompt_ids = prompt_ids[len(prompt_ids) + len(response_ids) - budget:]
    tokens = np.concatenate([[ids.bos], prompt_ids, response_ids, [ids.eos]]).astype(np.int32)
    loss_mask = np.zeros(len(tokens), dtype=bool)
    loss_mask[1 + len(prompt_ids):] = True
    examples.append((tokens, loss_mask))
  return examples


def _check_max_len(max_len: int, minimum: int) -> None:
  if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < minimum:
    raise UserError(f"config.model.max_len must be an integer >= {minimum} for these examples,"
                    f" got {max_len!r}")
