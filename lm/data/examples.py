"""Records -> token arrays for sequence classification and supervised fine-tuning (SFT).

Classification (one label per text):
  encoder (causal=False): [CLS] text [SEP]   the classifier reads the CLS position
  decoder (causal=True):  text [EOS]         the classifier reads the last (EOS) position, the
                                             one token that has seen the whole text
  Long texts lose text tokens from the end; the special tokens always stay.

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

from lm.data.records import LabelSet, Record
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

  def __len__(self) -> int:
    return len(self.tokens)

  @property
  def lengths(self) -> np.ndarray:
    """int64 [N]: the number of tokens of every example."""
    return np.array([len(t) for t in self.tokens], dtype=np.int64)


def classification_examples(records: Sequence[Record], tokenizer: Tokenizer,
                            label_set: LabelSet | None, *, max_len: int,
                            causal: bool) -> ClassificationExamples:
  """Encodes the "text" of every record; labels via `label_set` (-1 without label / set)."""
  ids = tokenizer.special_ids
  num_special = 1 if causal else 2
  _check_max_len(max_len, num_special + 1)
  max_text = max_len - num_special
  tokens, labels, num_truncated = [], [], 0
  for record in records:
    if "text" not in record.values:
      raise UserError(f"{record.where}: no text (config.data.text_field)")
    text_ids = tokenizer.encode_array(record.values["text"]).astype(np.int32, copy=False)
    if len(text_ids) > max_text:
      text_ids = text_ids[:max_text]
      num_truncated += 1
    if causal:
      tokens.append(np.concatenate([text_ids, [ids.eos]]).astype(np.int32))
    else:
      tokens.append(np.concatenate([[ids.cls], text_ids, [ids.sep]]).astype(np.int32))
    label = record.values.get("label")
    if label is None or label_set is None:
      labels.append(NO_LABEL)
    else:
      labels.append(label_set.index(label, record.where))
  return ClassificationExamples(tokens, np.array(labels, dtype=np.int32), num_truncated, ids.pad)


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
