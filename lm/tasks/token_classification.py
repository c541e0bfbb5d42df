"""Token classification (named-entity recognition): a tag for every word of a sentence.

Data: CoNLL-style files (`token<TAB>tag`, or columns with the tag last; a blank line between
sentences) or JSONL (`tokens`, `tags`), read by `lm.data.tagged`. Tags in config.task.tag_scheme
(IOB1, IOB2 or BIOES) are converted to IOB2 as read; an I- tag that continues no entity is read
as the start of one, as conlleval does (counted and reported), or refused under
config.task.strict_tags.

Sub-words: each word is encoded on its own; its first piece carries the word's tag and is where
the word's tag is predicted; the other pieces (and the specials, and padding) have loss weight
0. A sentence whose pieces do not fit the context is split into windows of whole words (a word
with more pieces than a window keeps only its first ones); every word is trained on and
predicted exactly once, and the splits are counted in the run's log.

The head is a linear classifier at every position (ModelConfig pooling='none'), on an encoder
(sees the whole window) or a decoder (sees the words before).
"""

import dataclasses
import os
from typing import Any

import jax
import numpy as np

from lm.data import buckets, labels, tagged
from lm.data.labels import LabelSet
from lm.errors import UserError
from lm.evaluation import entity_metrics
from lm.models.config import model_config_from
from lm.tasks import base, distillation, supervised
from lm.training import steps

REPORT_FILE = "eval_report.json"
OUTSIDE = entity_metrics.OUTSIDE


@dataclasses.dataclass
class Windows:
  """Encoded windows of tagged sentences (what the model reads).

  tokens[i] int32 [L_i] (specials included); targets[i] int32 [L_i] (the tag id at each word's
  first piece, 0 elsewhere); weights[i] float32 [L_i] (1 at first pieces); sentence[i] and
  first_word[i]: the sentence and its first word that window i covers; token_types[i] int32
  [L_i] (each piece its word's type, 0 for specials), when the words have types.
  """
  tokens: list[np.ndarray]
  targets: list[np.ndarray]
  weights: list[np.ndarray]
  sentence: np.ndarray
  first_word: np.ndarray
  num_split: int  # Sentences that took more than one window.
  num_cut_words: int  # Words that lost pieces past a window's length.
  pad_id: int
  token_types: list[np.ndarray] | None = None
  # float32 [L_i, C]: a distillation teacher's logits of each word at its first piece (0
  # elsewhere; lm/tasks/distillation.py).
  teacher_logits: list[np.ndarray] | None = None

  def __len__(self) -> int:
    return len(self.tokens)

  @property
  def lengths(self) -> np.ndarray:
    return np.array([len(t) for t in self.tokens], dtype=np.int64)


def encode_windows(sentences: list[tuple[str, ...]],
                   tag_ids: list[np.ndarray] | None,
                   tokenizer: Any,
                   *,
                   max_len: int,
                   causal: bool,
                   word_types: list[list[int]] | None = None) -> Windows:
  """Windows of `sentences` (words) with their tag ids (None: unlabeled, all targets 0), and
  with `word_types` (one int >= 1 per word, e.g. tagged.softword_types) token types.

  Encoder: [CLS] pieces [SEP]; decoder: pieces [EOS]. Windows hold whole words greedily.
  """
  ids = tokenizer.special_ids
  budget = max_len - (1 if causal else 2)
  if budget < 1:
    raise UserError(f"config.model.max_len={max_len}: too short for token classification")
  out = Windows([], [], [], [], [], 0, 0, ids.pad, [] if word_types is not None else None)

  def emit(sentence_index, first_word, pieces, labels):
    piece_counts = [len(p) for p in pieces]
    if out.token_types is not None:
      types = word_types[sentence_index][first_word:first_word + len(pieces)]
      body_types = np.repeat(np.asarray(types, np.int32), piece_counts)
      out.token_types.append(
          np.concatenate([body_types, [0]] if causal else [[0], body_types, [0]]).astype(np.int32))
    starts = np.cumsum([0] + piece_counts[:-1]) + (0 if causal else 1)
    body = np.concatenate(pieces).astype(np.int32)
    tokens = (np.concatenate([body, [ids.eos]]) if causal else np.concatenate([[ids.cls], body,
                                                                               [ids.sep]]))
    targets = np.zeros(len(tokens), np.int32)
    weights = np.zeros(len(tokens), np.float32)
    targets[starts] = labels
    weights[starts] = 1.0
    out.tokens.append(tokens.astype(np.int32))
    out.targets.append(targets)
    out.weights.append(weights)
    out.sentence.append(sentence_index)
    out.first_word.append(first_word)

  for s, words in enumerate(sentences):
    labels_W = tag_ids[s] if tag_ids is not None else np.zeros(len(words), np.int32)
    pieces, used, start, windows = [], 0, 0, 0
    for w, word in enumerate(words):
      word_pieces = tokenizer.encode_array(word)
      if not len(word_pieces):  # A word the tokenizer drops (e.g. a lone space) still counts.
        word_pieces = np.array([ids.unk], np.int32)
      if len(word_pieces) > budget:
        word_pieces = word_pieces[:budget]
        out.num_cut_words += 1
      if used + len(word_pieces) > budget:
        emit(s, start, pieces, labels_W[start:w])
        pieces, used, start, windows = [], 0, w, windows + 1
      pieces.append(word_pieces)
      used += len(word_pieces)
    emit(s, start, pieces, labels_W[start:])
    out.num_split += windows > 0
  out.sentence = np.array(out.sentence, np.int64)
  out.first_word = np.array(out.first_word, np.int64)
  return out


def windows_batch(windows: Windows, indices: np.ndarray, row_weights: np.ndarray,
                  bucket_lengths) -> dict[str, np.ndarray]:
  """`inputs`, `segment_ids`, `targets` int32 [B, L] and `weights` float32 [B, L] (0 for rows of
  weight 0, padding, specials and non-first pieces)."""
  row_weights = np.asarray(row_weights, np.float32)
  pick = lambda field: [field[i] for i in indices]
  inputs, segment_ids = buckets.pad_rows(pick(windows.tokens), row_weights, bucket_lengths,
                                         windows.pad_id)
  targets, _ = buckets.pad_rows(pick(windows.targets), row_weights, bucket_lengths, 0)
  weights = np.zeros(inputs.shape, np.float32)
  for row, (i, w) in enumerate(zip(indices, row_weights)):
    weights[row, :len(windows.weights[i])] = windows.weights[i] * w
  batch = {"inputs": inputs, "segment_ids": segment_ids, "targets": targets, "weights": weights}
  if windows.token_types is not None:
    batch["token_types"] = buckets.pad_rows(pick(windows.token_types), row_weights,
                                            bucket_lengths, 0)[0]
  if windows.teacher_logits is not None:
    teacher = np.zeros(inputs.shape + windows.teacher_logits[0].shape[-1:], np.float32)
    for row, i in enumerate(indices):
      teacher[row, :len(windows.teacher_logits[i])] = windows.teacher_logits[i]
    batch["teacher_logits"] = teacher
  return batch


def predict_window_probs(run_batch, windows: Windows, batch_size: int, bucket_lengths,
                         rows: np.ndarray | None = None) -> list[np.ndarray]:
  """Tag probabilities [L_i, C] of every window (supervised.predict_in_order)."""
  make = lambda indices, weights, length: windows_batch(windows, indices, weights, (length,))
  probs = supervised.predict_in_order(run_batch, windows.lengths, batch_size, bucket_lengths,
                                      make, rows)
  return [p[:len(tokens)] for p, tokens in zip(probs, windows.tokens)]


def word_probs(windows: Windows, probs: list[np.ndarray], lengths: list[int]) -> list[np.ndarray]:
  """The probabilities (or logits) [W_s, C] of every word of every sentence (of `lengths`
  words), read at each word's first piece."""
  out = [None] * len(lengths)
  for i, p in enumerate(probs):
    s, first = windows.sentence[i], windows.first_word[i]
    at_words = p[windows.weights[i] > 0]
    if out[s] is None:
      out[s] = np.zeros((lengths[s], p.shape[-1]), np.float32)
    out[s][first:first + len(at_words)] = at_words
  return out


def at_first_pieces(windows: Windows, per_word: list[np.ndarray]) -> list[np.ndarray]:
  """word_probs' inverse: [L_i, C] of every window, each word's row of `per_word` (one [W_s, C]
  per sentence) at its first piece, 0 elsewhere."""
  out = []
  for i, weights in enumerate(windows.weights):
    words = per_word[windows.sentence[i]]
    at = weights > 0
    rows = np.zeros((len(weights), words.shape[-1]), np.float32)
    rows[at] = words[windows.first_word[i]:windows.first_word[i] + int(at.sum())]
    out.append(rows)
  return out


class TokenClassificationTask(base.Task):
  """Tags from config.data.source (and valid_source, or a held-out valid_fraction of the
  sentences); a linear classifier at every position; entity F1 (seqeval) as eval/f1."""

  default_best_metric = "eval/f1"
  recurrent_models = True
  distills = True

  @classmethod
  def add_config_keys(cls, config) -> None:
    # Token classification: the tag scheme of the files ('iob1', 'iob2' or 'bioes'; read as
    # IOB2, predictions are written in IOB2).
    config.task.tag_scheme = "iob2"
    # True: an I- tag that continues no entity is an error (file and line), and entities are
    # scored by seqeval's strict IOB2 mode; False: the tag starts an entity, as conlleval reads
    # it (counted in the log and eval_report.json), and seqeval's default mode scores.
    config.task.strict_tags = False
    # Weibo NER writes a word-position digit after each character ('口0'): 'drop' reads the
    # character alone, 'keep' the token as written, 'segment' the character alone with its place
    # in its word (B/M/E/S) as a token type (type embeddings that start fresh after init_from
    # and train with full fine-tuning; linear_probe, lora and freeze_embeddings leave them at
    # their random start; lm/data/tagged.py).
    config.data.position_digits = "keep"

  @classmethod
  def check_config(cls, values: dict) -> None:
    super().check_config(values)
    scheme = values["task"]["tag_scheme"]
    if scheme not in entity_metrics.SCHEMES:
      raise UserError(f"config.task.tag_scheme={scheme!r}: choose one of "
                      f"{', '.join(entity_metrics.SCHEMES)}")
    digits = values["data"]["position_digits"]
    if digits not in tagged.POSITION_DIGITS:
      raise UserError(f"config.data.position_digits={digits!r}: choose one of "
                      f"{', '.join(tagged.POSITION_DIGITS)}")

  @classmethod
  def head_fields(cls, config: dict, workdir: str) -> dict[str, Any]:
    return {
        "num_classes": len(labels.load(workdir).names),
        "pooling": "none",
        **input_fields(config["data"].get("position_digits", "keep"))
    }

  @classmethod
  def predict_file(cls, workdir: str, input_path: str, output_path: str,
                   options: dict[str, Any]) -> dict[str, float]:
    return predict_tags(workdir, input_path, output_path, checkpoint=options["checkpoint"],
                        batch_size=options["batch_size"],
                        encoding_errors=options.get("encoding_errors", "strict"))

  def __init__(self, config: Any, workdir: str, model_fields: dict[str, Any]):
    self.config = config
    train, valid = read_tagged_splits(config)
    self.repaired = {}
    train_tags = self._gold_tags(train, "train")
    valid_tags = self._gold_tags(valid, "validation")
    self.labels = saved_or_new_labels(workdir, config.data.labels, train_tags)
    train_ids = tag_ids(self.labels, train_tags, train)
    valid_ids = tag_ids(self.labels, valid_tags, valid)
    labels.save(workdir, self.labels)  # Only once every tag is known to be in the set.
    self.tokenizer = base.prepare_tokenizer(config, workdir,
                                            lambda: [" ".join(s.tokens) for s in train.sentences])
    self.model_config = model_config_from(config.model,
                                          self.tokenizer.vocab_size,
                                          num_classes=len(self.labels.names),
                                          pooling="none",
                                          **input_fields(config.data.position_digits),
                                          **model_fields)
    self.seq_len = self.model_config.max_len
    self.buckets = buckets.bucket_lengths(self.seq_len)
    encode = dict(max_len=self.seq_len, causal=self.model_config.causal)
    self.train = encode_windows([s.tokens for s in train.sentences], train_ids, self.tokenizer,
                                word_types=word_types(train), **encode)
    self.valid = encode_windows([s.tokens for s in valid.sentences], valid_ids, self.tokenizer,
                                word_types=word_types(valid), **encode)
    if config.distill.teacher:  # Its outputs over the training words, once (cached).
      per_word = distillation.teacher_word_logits(config, workdir,
                                                  [s.tokens for s in train.sentences],
                                                  word_types(train), self.labels)
      self.train.teacher_logits = at_first_pieces(self.train, per_word)
    self.valid_ids = valid_ids
    self.valid_tags = valid_tags
    self.valid_lengths = [len(s.tokens) for s in valid.sentences]
    self._last_report: dict[str, Any] = {}

  def _gold_tags(self, split: tagged.TaggedFile, name: str) -> list[list[str]]:
    tags, repairs = entity_metrics.check_tags([s.tags for s in split.sentences],
                                              scheme=self.config.task.tag_scheme,
                                              strict=self.config.task.strict_tags,
                                              where_of=split.where)
    self.repaired[name] = repairs
    return tags

  def loss_fn(self, logits_BxTxC, batch):
    loss_BxT = steps.token_nll(logits_BxTxC, batch["targets"])
    return distillation.taught(self.config.distill, logits_BxTxC, batch, loss_BxT)

  def train_batches(self, rows: np.ndarray) -> base.Batches:
    make = lambda indices, weights, lengths: windows_batch(self.train, indices, weights, lengths)
    return supervised.bucketed_train_batches(self.config, self.train.lengths, self.buckets, rows,
                                             make)

  def evaluate(self, layout, params, max_batches: int) -> dict[str, float]:
    del max_batches  # Entity F1 needs whole sentences: always the whole validation split.
    batch_size = self.config.train.eval_batch_size
    run = lambda batch: layout.predict_step(params, layout.put_batch(batch, batch_size))
    probs = predict_window_probs(run, self.valid, batch_size, self.buckets,
                                 layout.rows(batch_size))
    per_word = word_probs(self.valid, probs, self.valid_lengths)
    names = self.labels.names
    predicted = [[names[i] for i in p.argmax(-1)] for p in per_word]
    mode = "strict" if self.config.task.strict_tags else "default"
    scores = entity_metrics.entity_scores(self.valid_tags, predicted, mode=mode)
    nll = -np.concatenate([np.log(np.maximum(p[np.arange(len(g)), g], 1e-30))
                           for p, g in zip(per_word, self.valid_ids)])
    self._last_report = scores
    metrics = {f"eval/{k}": v for k, v in scores.items() if "/" not in k}
    metrics["eval/loss"] = float(np.mean(nll))
    return metrics

  def save_report(self, workdir: str, step: int, metrics: dict[str, float]) -> None:
    entity_metrics.write_entity_report(os.path.join(workdir, REPORT_FILE),
                                       self._last_report,
                                       extra={
                                           "step": step,
                                           "eval/loss": metrics["eval/loss"],
                                           "repaired_tags": self.repaired,
                                           "split_sentences": {
                                               "train": self.train.num_split,
                                               "validation": self.valid.num_split
                                           },
                                       })

  def describe(self) -> str:
    repaired = sum(self.repaired.values())
    return (f"Data: {len(set(self.train.sentence.tolist())):,} training sentences in "
            f"{len(self.train):,} windows, {len(self.valid_lengths):,} validation sentences; "
            f"{len(self.labels.names)} tags ({', '.join(self.labels.names)}); "
            f"{self.train.num_split + self.valid.num_split:,} sentences longer than "
            f"{self.seq_len} tokens split into windows, "
            f"{self.train.num_cut_words + self.valid.num_cut_words:,} words cut to a window; "
            f"{repaired:,} I- tags continuing no entity read as B- "
            f"(train {self.repaired['train']}, validation {self.repaired['validation']})")


def read_tagged_splits(config: Any) -> tuple[tagged.TaggedFile, tagged.TaggedFile]:
  """The training and validation files: config.data.valid_source, or a held-out
  valid_fraction of the training sentences (seeded by supervised.SPLIT_SEED)."""
  data_cfg = config.data
  read = dict(has_tags=True,
              position_digits=data_cfg.position_digits,
              encoding_errors=data_cfg.encoding_errors)
  train = tagged.read_tagged(data_cfg.source, config_key="config.data.source", **read)
  if data_cfg.valid_source:
    valid = tagged.read_tagged(data_cfg.valid_source, config_key="config.data.valid_source",
                               **read)
    return train, valid
  order = np.random.default_rng(supervised.SPLIT_SEED).permutation(len(train.sentences))
  num_valid = max(1, int(round(data_cfg.valid_fraction * len(order))))
  if num_valid >= len(order):
    raise UserError(f"config.data.source={data_cfg.source!r}: {len(order)} sentence(s) are too"
                    f" few to hold out a validation split; set config.data.valid_source")
  held_out = set(order[:num_valid].tolist())
  pick = lambda keep: dataclasses.replace(
      train, sentences=[s for i, s in enumerate(train.sentences) if (i in held_out) == keep])
  return pick(False), pick(True)


def input_fields(position_digits: str) -> dict[str, int]:
  """The ModelConfig fields of the inputs besides the tokens: with position_digits='segment',
  a token type per character, its place in its word (tagged.SOFTWORD_TYPES)."""
  return {"type_vocab_size": len(tagged.SOFTWORD_TYPES)} if position_digits == "segment" else {}


def word_types(split: tagged.TaggedFile) -> list[list[int]] | None:
  """Each word's softword type, where the file was read with its word positions."""
  if not split.sentences or split.sentences[0].positions is None:
    return None
  return [tagged.softword_types(s.positions) for s in split.sentences]


def tag_ids(label_set: LabelSet, tags: list[list[str]],
            split: tagged.TaggedFile) -> list[np.ndarray]:
  """The label ids of the IOB2 `tags` of `split`; a tag outside the label set names its file
  and line."""
  return [
      np.array([label_set.index(tag, split.where(s, t)) for t, tag in enumerate(sentence)],
               np.int32)
      for s, sentence in enumerate(tags)
  ]


def saved_or_new_labels(workdir: str, names_text: str, tags: list[list[str]]) -> LabelSet:
  """The tag set saved in the workdir (a resumed run), else config.data.labels (comma-
  separated IOB2 tags) or 'O' and the sorted tags of the training split."""
  saved = labels.load_saved(workdir)
  if saved is not None:
    return saved
  if names_text.strip():
    names = [name.strip() for name in names_text.split(",")]
  else:
    names = [OUTSIDE] + sorted({tag for sentence in tags for tag in sentence} - {OUTSIDE})
  return LabelSet(names, "config.data.labels")


def predict_tags(workdir: str, input_path: str, output_path: str, *, checkpoint: str,
                 batch_size: int, encoding_errors: str = "strict") -> dict[str, float]:
  """`lm.predict` for a tagger: writes `input_path` with predicted tags to `output_path` (the
  input's format, line for line); scores the input's own tags, if it has them."""
  from lm.training import checkpoints  # pylint: disable=g-import-not-at-top

  config = checkpoints.load_config(workdir)
  names = labels.load(workdir).names
  model_cfg, params, tokenizer = checkpoints.load_for_inference(workdir, checkpoint)
  found = tagged.read_tagged(input_path,
                             position_digits=config["data"].get("position_digits", "keep"),
                             encoding_errors=encoding_errors,
                             config_key="--input")
  if tagged.tagged_format(output_path) != found.format:
    raise UserError(f"--output={output_path}: write the input's format ({found.format}: "
                    f"{'.jsonl' if found.format == 'jsonl' else 'not .jsonl'})")
  per_word = _word_outputs(model_cfg, params, tokenizer, [s.tokens for s in found.sentences],
                          word_types(found), batch_size)
  predicted = [[names[i] for i in p.argmax(-1)] for p in per_word]
  tagged.write_predictions(found, predicted, output_path)
  if not found.has_tags:
    return {}
  task_cfg = config["task"]
  gold, _ = entity_metrics.check_tags([s.tags for s in found.sentences],
                                      scheme=task_cfg.get("tag_scheme", "iob2"),
                                      strict=False,
                                      where_of=found.where)
  mode = "strict" if task_cfg.get("strict_tags") else "default"
  scores = entity_metrics.entity_scores(gold, predicted, mode=mode)
  entity_metrics.write_entity_report(output_path + ".metrics.json", scores, extra={
      "input": os.path.abspath(input_path),
      "checkpoint": checkpoint
  })
  return {f"eval/{k}": v for k, v in scores.items() if "/" not in k}


def teacher_word_logits(workdir: str, checkpoint: str, sentences: list[tuple[str, ...]],
                        types: list[list[int]] | None, batch_size: int) -> list[np.ndarray]:
  """The logits [W_s, C] of a trained tagger's checkpoint for every word of `sentences` (with
  their softword `types`, which it reads if it was trained on them)."""
  from lm.training import checkpoints  # pylint: disable=g-import-not-at-top
  model_cfg, params, tokenizer = checkpoints.load_for_inference(workdir, checkpoint)
  return _word_outputs(model_cfg, params, tokenizer, sentences,
                       types if model_cfg.type_vocab_size else None, batch_size, logits=True)


def _word_outputs(model_cfg, params, tokenizer, sentences: list[tuple[str, ...]],
                  types: list[list[int]] | None, batch_size: int,
                  logits: bool = False) -> list[np.ndarray]:
  """Tag probabilities (with `logits`, the logits) [W_s, C] of every word of `sentences`."""
  import functools  # pylint: disable=g-import-not-at-top
  from lm.models.transformer import Transformer  # pylint: disable=g-import-not-at-top
  windows = encode_windows(sentences, None, tokenizer, max_len=model_cfg.max_len,
                           causal=model_cfg.causal, word_types=types)
  forward = jax.jit(functools.partial(steps.predict_step, apply_fn=Transformer(model_cfg).apply,
                                      logits=logits))
  outputs = predict_window_probs(lambda batch: forward(params, batch), windows, batch_size,
                                 buckets.bucket_lengths(model_cfg.max_len))
  return word_probs(windows, outputs, [len(words) for words in sentences])
