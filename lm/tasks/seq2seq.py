"""Sequence to sequence (translation, summarization) with an encoder–decoder.

Pairs come from line-aligned parallel files (config.data.source = the source side,
config.data.target = the target side), or from one file with two fields (.tsv, .csv, .jsonl,
.json; config.data.source_field / target_field), or TFDS. The encoder reads
`task.source_prefix + source [EOS]` (after a BOS with task.source_bos); the decoder is taught
`[START] target` -> `target [EOS]` (START = config.task.decoder_start_id, by default the
tokenizer's BOS; the shift is `pair_batch`'s). Evaluation decodes the validation sources
(the first config.train.eval_examples of them, 0 = all) and scores them with sacreBLEU / chrF
(translation) or ROUGE (summarization); predictions go beside eval_report.json.

Pairs with an empty source or target are skipped and counted; a source or target longer than
config.model.max_len is cut and counted.
"""

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lm import seq2seq_decoding
from lm.data import atomic, buckets, reader
from lm.errors import UserError
from lm.evaluation import generation_metrics
from lm.models.architecture import make_model
from lm.models.config import model_config_from
from lm.tasks import base, distillation, supervised
from lm.training import steps

REPORT_FILE = "eval_report.json"
PREDICTIONS_FILE = "eval_predictions.txt"
METRICS = ("translation", "summarization")


@dataclasses.dataclass
class Pairs:
  """Tokenized pairs: encoder inputs `source [EOS]`, decoder `target` = [BOS] text [EOS]."""
  sources: list[np.ndarray]
  targets: list[np.ndarray]
  references: list[str]  # The target texts as read (what predictions are scored against).
  num_truncated: int = 0
  weights: np.ndarray | None = None  # float32 [N]: each pair's loss weight (default 1).

  def __len__(self) -> int:
    return len(self.sources)

  @property
  def lengths(self) -> np.ndarray:
    """The padded length that batches the pair: its longer side (decoder side without EOS)."""
    return np.array([max(len(s), len(t) - 1) for s, t in zip(self.sources, self.targets)],
                    np.int64)


class EncoderDecoderTask(base.Task):
  """What the encoder–decoder tasks (seq2seq, span corruption) share: the architecture check,
  the model's vocabulary (the tokenizer's and config.data.extra_ids after it), and the loss:
  per-token cross-entropy of the decoder's targets with config.task.label_smoothing."""

  @classmethod
  def check_config(cls, values: dict) -> None:
    architecture = values["model"]["architecture"]
    adopted = values["init_architecture"] == "adopt" and values["init_from"]
    if architecture != "encoder_decoder" and not adopted:
      raise UserError(f"config.task.kind={values['task']['kind']!r} trains an encoder–decoder: "
                      f"set config.model.architecture='encoder_decoder', not {architecture!r}")
    if values["data"]["extra_ids"] < 0:
      raise UserError(f"config.data.extra_ids={values['data']['extra_ids']}: must be >= 0")

  @classmethod
  def head_fields(cls, config: dict, workdir: str) -> dict[str, Any]:
    from lm.data import pipeline, tokenizers  # pylint: disable=g-import-not-at-top
    vocab = tokenizers.load_tokenizer(os.path.join(workdir, pipeline.TOKENIZER_DIR)).vocab_size
    return {"vocab_size": vocab + config["data"].get("extra_ids", 0)}

  def _model_config(self, config: Any, task_fields: dict[str, Any]):
    return model_config_from(config.model,
                              self.tokenizer.vocab_size + config.data.extra_ids, **task_fields)

  def loss(self, apply_fn, params, batch, rng):
    logits_BxTxV = pair_logits(apply_fn, params, batch, deterministic=False, rngs={"dropout": rng})
    return self.loss_fn(logits_BxTxV, batch), {}

  def loss_fn(self, logits_BxTxV, batch):
    """Per-token cross-entropy against targets smoothed by config.task.label_smoothing (1 - s
    on the target, s spread evenly over the vocabulary)."""
    return steps.token_nll(logits_BxTxV, batch["targets"],
                           float(self.config.task.label_smoothing))

  def pair_loss(self, layout, params, batches) -> float:
    """Mean target-token NLL (no smoothing) over this process's `batches` of global batches of
    config.train.eval_batch_size."""
    batch_size = self.config.train.eval_batch_size
    totals = np.zeros(2)
    for batch in batches:
      totals += np.asarray(layout.per_row(nll_sums)(params, layout.put_batch(batch, batch_size)),
                           np.float64).sum(axis=0)
    return float(totals[0] / max(totals[1], 1.0))


class Seq2SeqTask(EncoderDecoderTask):
  """An encoder–decoder trained with teacher forcing and label smoothing on source/target
  pairs."""

  data_roles = ("source", "target")
  default_best_metric = "eval/loss"
  continues_prompt = False
  distills = True

  @classmethod
  def add_config_keys(cls, config) -> None:
    # Encoder–decoders: ids after the tokenizer's vocabulary, for T5's sentinels (span
    # corruption needs one per noise span of a window); a seq2seq run fine-tuning such a model
    # sets the same number.
    config.data.extra_ids = 0
    # Seq2seq: the target side of line-aligned parallel text (config.data.source is then the
    # source side, line i of one the translation of line i of the other; '' = each record of
    # config.data.source holds both, in source_field and target_field), and of the
    # validation file config.data.valid_source.
    config.data.target = ""
    config.data.valid_target = ""
    config.data.source_field = "source"
    config.data.target_field = "target"
    # Seq2seq: text put before every source (T5: 'translate English to German: ').
    config.task.source_prefix = ""
    # Seq2seq: the encoder's input starts with the tokenizer's BOS (BART's does).
    config.task.source_bos = False
    # Seq2seq: the token the decoder starts from; -1 = the tokenizer's BOS (imported models
    # keep theirs: T5 and Marian start from pad, BART from EOS).
    config.task.decoder_start_id = -1
    # Seq2seq: 'translation' (eval/bleu and eval/chrf, sacreBLEU) or 'summarization'
    # (eval/rouge1, rouge2, rougeL, rougeLsum) of the decoded validation sources.
    config.task.seq2seq_metrics = "translation"
    # Seq2seq decoding (evaluation, and lm.generate unless its flags say otherwise): beams
    # (1 = greedy), GNMT length penalty alpha, and the most tokens per output (0 = max_len - 1;
    # for SFT and chat evaluation, config.task.eval_generation: 0 = to the end of the context).
    config.task.beam_size = 1
    config.task.length_penalty = 0.6
    config.task.max_new_tokens = 0
    # Seq2seq (and SFT and chat with config.task.eval_generation): validation sources (prompts)
    # decoded and scored at each evaluation (0 = all).
    config.train.eval_examples = 0

  @classmethod
  def check_config(cls, values: dict) -> None:
    super().check_config(values)
    if values["task"]["seq2seq_metrics"] not in METRICS:
      raise UserError(f"config.task.seq2seq_metrics={values['task']['seq2seq_metrics']!r}: "
                      f"choose one of {', '.join(METRICS)}")
    if values["task"]["beam_size"] < 1:
      raise UserError(f"config.task.beam_size={values['task']['beam_size']}: must be >= 1")
    if values["data"]["valid_target"] and not values["data"]["valid_source"]:
      raise UserError("config.data.valid_target needs config.data.valid_source (its source "
                      "side)")

  @classmethod
  def generation_ids(cls, config: dict, tokenizer: Any, prompt: str) -> list[int]:
    """The encoder's input for a source text, as training built it (prefix, EOS, cut to the
    context)."""
    return _source_ids(tokenizer, config["task"], prompt, config["model"]["max_len"])[0]

  @classmethod
  def generate(cls, config: dict, model_config: Any, params: Any, tokenizer: Any,
               prompts: list[str], batch_size: int | None = None, **options: Any) -> list[str]:
    """`lm.generate`: the output text of every source, `batch_size` at a time (default: all);
    options as there (beam_size, length_penalty, max_new_tokens, temperature, top_k, top_p,
    seed)."""
    ids = [np.array(cls.generation_ids(config, tokenizer, p), np.int32) for p in prompts]
    return decode_sources(make_model(model_config), params, tokenizer, ids,
                          start_id=decoder_start_id(config["task"], tokenizer),
                          batch_size=batch_size or len(ids),
                          bucket_lengths=buckets.bucket_lengths(model_config.max_len),
                          rng=jax.random.PRNGKey(options.pop("seed")),
                          **options)

  def __init__(self, config: Any, workdir: str, task_fields: dict[str, Any]):
    self.config = config
    check_init_from(config)
    train, valid, self.num_skipped = _read_pairs(config)
    self.tokenizer = base.prepare_tokenizer(
        config, workdir, lambda: [text for r in train for text in r.values.values()])
    pair_weights = None
    if config.distill.teacher:  # Its outputs of the training sources, once (cached).
      train, pair_weights = _with_teacher_outputs(config, workdir, train)
    self.model_config = self._model_config(config, task_fields)
    self.seq_len = self.model_config.max_len
    self.buckets = buckets.bucket_lengths(self.seq_len)
    start = decoder_start_id(config.task, self.tokenizer)
    self.train = _tokenize(train, self.tokenizer, config.task, start, self.seq_len)
    self.train.weights = pair_weights
    self.valid = _tokenize(valid, self.tokenizer, config.task, start, self.seq_len)
    if not 0.0 <= config.task.label_smoothing < 1.0:
      raise UserError(f"config.task.label_smoothing={config.task.label_smoothing}: must be in "
                      f"[0, 1)")
    self._last_predictions: list[str] = []
    self._signature = ""

  def train_batches(self, rows: np.ndarray) -> base.Batches:
    return PairBatches(self.train, self.config.train.batch_size, self.config.seed, self.buckets,
                       rows, self.tokenizer.special_ids.pad)

  def evaluate(self, layout, params, max_batches: int) -> dict[str, float]:
    """eval/loss (per target token, without smoothing) over the validation pairs, and the
    metrics of the decoded validation sources."""
    del max_batches  # The loss is over all pairs; eval_examples limits the decoding.
    batch_size = self.config.train.eval_batch_size
    rows = layout.rows(batch_size)
    pad = self.tokenizer.special_ids.pad
    batches = (pair_batch(self.valid, indices, weights, self.buckets, pad, rows)
               for indices, weights in buckets.eval_order(self.valid.lengths, batch_size))
    metrics = {"eval/loss": self.pair_loss(layout, params, batches)}
    metrics.update(self._decode_and_score(layout.host_params(params)))
    return metrics

  def _decode_and_score(self, params) -> dict[str, float]:
    """Decodes the first config.train.eval_examples validation sources (0 = all), with
    `params` on the host (decoding runs on one device)."""
    count = min(len(self.valid), self.config.train.eval_examples or len(self.valid))
    self._last_predictions = self.decode(params, self.valid.sources[:count])
    references = self.valid.references[:count]
    if self.config.task.seq2seq_metrics == "translation":
      scores = generation_metrics.bleu_chrf(self._last_predictions, references)
      self._signature = scores["bleu_signature"]
      return {"eval/bleu": scores["bleu"], "eval/chrf": scores["chrf"]}
    scores = generation_metrics.rouge(self._last_predictions, references)
    return {f"eval/{name}": value for name, value in scores.items()}

  def decode(self, params, sources: list[np.ndarray]) -> list[str]:
    """The decoded text of every source, with config.task's decoding settings."""
    cfg = self.config.task
    return decode_sources(make_model(self.model_config),
                          params,
                          self.tokenizer,
                          sources,
                          start_id=decoder_start_id(cfg, self.tokenizer),
                          batch_size=self.config.train.eval_batch_size,
                          bucket_lengths=self.buckets,
                          max_new_tokens=cfg.max_new_tokens or self.seq_len,
                          beam_size=cfg.beam_size,
                          length_penalty=cfg.length_penalty)

  def save_report(self, workdir: str, step: int, metrics: dict[str, float]) -> None:
    report = {"step": step, **metrics, "examples_decoded": len(self._last_predictions)}
    if self._signature:
      report["sacrebleu_signature"] = self._signature
    atomic.atomic_write_text(os.path.join(workdir, REPORT_FILE), json.dumps(report, indent=2))
    lines = [p.replace("\n", "\\n") + "\n" for p in self._last_predictions]
    atomic.atomic_write_text(os.path.join(workdir, PREDICTIONS_FILE), "".join(lines))

  def describe(self) -> str:
    taught = ("" if self.train.weights is None else
              f" ({int(np.sum(self.train.weights < 1)):,} of them the teacher's outputs, "
              f"config.distill.alpha={self.config.distill.alpha})")
    return (f"Data: {len(self.train):,} training pairs{taught}, {len(self.valid):,} validation; "
            f"{self.num_skipped:,} with an empty side skipped; "
            f"{self.train.num_truncated + self.valid.num_truncated:,} cut to {self.seq_len} "
            f"tokens; padded to buckets {', '.join(map(str, self.buckets))}")


class PairBatches:
  """Shuffled training batches of pairs of similar length (`buckets.BucketedBatches`), source
  and target each padded to its own bucket length."""

  def __init__(self, pairs: Pairs, batch_size: int, seed: int, bucket_lengths, rows, pad_id):
    self._order = buckets.BucketedBatches(pairs.lengths,
                                          batch_size=batch_size,
                                          seed=seed,
                                          buckets=bucket_lengths)
    self._pairs, self._buckets, self._rows, self._pad = pairs, bucket_lengths, rows, pad_id

  def next_batch(self) -> dict[str, np.ndarray]:
    indices, weights = self._order.global_indices(self._order.step)
    self._order.set_state({"step": self._order.step + 1})
    return pair_batch(self._pairs, indices, weights, self._buckets, self._pad, self._rows)

  def get_state(self) -> dict:
    return self._order.get_state()

  def set_state(self, state: dict) -> None:
    self._order.set_state(state)


def pair_batch(pairs: Pairs, indices, weights, bucket_lengths, pad_id, rows=None) -> dict:
  """The batch (`padded_pairs`) of the global batch `indices`' `rows` (default all); source
  and target are padded to the bucket lengths of the whole global batch's longest, so that every
  process pads alike. Weight-0 rows are all padding."""
  S = buckets.bucket_length(max(len(pairs.sources[i]) for i in indices), bucket_lengths)
  T = buckets.bucket_length(max(len(pairs.targets[i]) - 1 for i in indices), bucket_lengths)
  if rows is not None:
    indices, weights = indices[rows], weights[rows]
  if pairs.weights is not None:
    weights = np.asarray(weights, np.float32) * pairs.weights[np.asarray(indices)]
  return padded_pairs([pairs.sources[i] for i in indices], [pairs.targets[i] for i in indices],
                      weights, S, T, pad_id)


def padded_pairs(sources, targets, weights, S: int, T: int, pad_id: int) -> dict:
  """`inputs` / `source_segments` [B, S] (encoder input), `decoder_inputs` / `targets` /
  `target_segments` / `weights` [B, T]: teacher forcing, the one place of the shift (the decoder
  reads target[:-1] and predicts target[1:], each `target` being [BOS] ... [EOS]). Rows of
  weight 0 are all padding."""
  B = len(sources)
  batch = {
      "inputs": np.full((B, S), pad_id, np.int32),
      "source_segments": np.zeros((B, S), np.int32),
      "decoder_inputs": np.full((B, T), pad_id, np.int32),
      "targets": np.full((B, T), pad_id, np.int32),
      "target_segments": np.zeros((B, T), np.int32),
      "weights": np.zeros((B, T), np.float32),
  }
  for row, (source, target, weight) in enumerate(zip(sources, targets, weights)):
    if weight <= 0:
      continue
    batch["inputs"][row, :len(source)] = source
    batch["source_segments"][row, :len(source)] = 1
    n = len(target) - 1
    batch["decoder_inputs"][row, :n] = target[:-1]
    batch["targets"][row, :n] = target[1:]
    batch["target_segments"][row, :n] = 1
    batch["weights"][row, :n] = weight
  return batch


def decoder_start_id(task_cfg: Any, tokenizer) -> int:
  """config.task.decoder_start_id, or the tokenizer's BOS (-1); UserError if out of range."""
  start = task_cfg.get("decoder_start_id", -1)
  if start == -1:
    return tokenizer.special_ids.bos
  if not 0 <= start < tokenizer.vocab_size:
    raise UserError(f"config.task.decoder_start_id={start}: not a token id of the tokenizer "
                    f"(0 .. {tokenizer.vocab_size - 1}, or -1 for its BOS)")
  return start


def decode_sources(model, params, tokenizer, sources: list[np.ndarray], *, start_id: int,
                   batch_size: int, bucket_lengths, **options: Any) -> list[str]:
  """The output text of every source: `seq2seq_decoding.decode_batch` (its `options`) over
  batches of similar length, each padded to a bucket length (one compilation per bucket)."""
  special = tokenizer.special_ids
  lengths = np.array([len(s) for s in sources], np.int64)
  outputs: list[str] = [""] * len(sources)
  for indices, weights in buckets.eval_order(lengths, batch_size):
    length = buckets.bucket_length(int(lengths[indices].max()), bucket_lengths)
    tokens = seq2seq_decoding.decode_batch(model,
                                           params, [list(sources[i]) for i in indices],
                                           bos_id=start_id,
                                           eos_id=special.eos,
                                           pad_id=special.pad,
                                           pad_to=length,
                                           **options)
    for index, weight, output in zip(indices, weights, tokens):
      if weight > 0:
        outputs[index] = tokenizer.decode(output)
  return outputs


def pair_logits(apply_fn, params, batch, **kwargs):
  return apply_fn({"params": params}, batch["inputs"], batch["decoder_inputs"],
                  batch["source_segments"], batch["target_segments"], **kwargs)


def nll_sums(params, batch, *, apply_fn):
  """[B, 2]: each row's summed target NLL and its number of target tokens."""
  logits_BxTxV = pair_logits(apply_fn, params, batch, deterministic=True)
  weights_BxT = batch["weights"]
  nll_B = jnp.sum(steps.token_nll(logits_BxTxV, batch["targets"]) * weights_BxT, axis=1)
  return jnp.stack([nll_B, jnp.sum(weights_BxT, axis=1)], axis=1)


def check_init_from(config: Any) -> None:
  """A pretrained model given as config.init_from must be an encoder–decoder with as many
  extra ids: checked before anything (its tokenizer) is copied."""
  from lm.training import checkpoints  # pylint: disable=g-import-not-at-top
  saved = checkpoints.load_config(config.init_from) if config.init_from else None
  if saved is None:
    return
  architecture = saved.get("model", {}).get("architecture", "transformer")
  if architecture != "encoder_decoder":
    raise UserError(f"config.init_from={config.init_from} holds a config.model.architecture="
                    f"{architecture!r} model (a {saved['task']['kind']!r} run); "
                    f"config.task.kind={config.task.kind!r} needs an 'encoder_decoder'")
  extra_ids = saved.get("data", {}).get("extra_ids", 0)
  if extra_ids != config.data.extra_ids:
    raise UserError(f"config.data.extra_ids={config.data.extra_ids}, but config.init_from="
                    f"{config.init_from} was trained with {extra_ids}: set "
                    f"--config.data.extra_ids={extra_ids}")


def _read_pairs(config: Any) -> tuple[list, list, int]:
  """Training and validation records with `source` and `target`, pairs with an empty side
  dropped; and how many were dropped."""
  data_cfg = config.data
  if not data_cfg.target:
    train, valid = supervised.read_splits(config, {
        "source": data_cfg.source_field,
        "target": data_cfg.target_field
    }, blank="keep")
  else:
    train = _parallel(data_cfg.source, data_cfg.target, data_cfg, "config.data.source",
                      "config.data.target")
    if data_cfg.valid_source:
      if not data_cfg.valid_target:
        raise UserError("config.data.valid_source is the source side of parallel text: set "
                        "config.data.valid_target to its target side")
      valid = _parallel(data_cfg.valid_source, data_cfg.valid_target, data_cfg,
                        "config.data.valid_source", "config.data.valid_target")
    else:
      from lm.data import splits  # pylint: disable=g-import-not-at-top
      train, valid = splits.held_out_split(train, data_cfg.valid_fraction,
                                           supervised.SPLIT_SEED)
    train = supervised.as_trained(train, data_cfg.clean, data_cfg.lowercase)
    valid = supervised.as_trained(valid, data_cfg.clean, data_cfg.lowercase)
  kept_train = [r for r in train if r.values["source"].strip() and r.values["target"].strip()]
  kept_valid = [r for r in valid if r.values["source"].strip() and r.values["target"].strip()]
  if not kept_train or not kept_valid:
    raise UserError(f"config.data.source: no {'training' if not kept_train else 'validation'} "
                    f"pairs with both a source and a target")
  return kept_train, kept_valid, len(train) + len(valid) - len(kept_train) - len(kept_valid)


def _parallel(source: str, target: str, data_cfg: Any, source_key: str, target_key: str):
  """Records pairing line i of the `source` files with line i of the `target` files."""
  read = lambda path, key: reader.read_records(path,
                                               fields={"text": "text"},
                                               required=("text",),
                                               config_key=key,
                                               txt_unit="line",
                                               blank="keep",
                                               encoding_errors=data_cfg.encoding_errors)
  sources, targets = read(source, source_key), read(target, target_key)
  if len(sources) != len(targets):
    raise UserError(f"{source_key}={source!r} has {len(sources):,} lines but {target_key}="
                    f"{target!r} has {len(targets):,}: parallel files pair line i with line i")
  return [
      reader.Record({
          "source": s.values["text"],
          "target": t.values["text"]
      }, f"{s.where} / {t.where}") for s, t in zip(sources, targets)
  ]


def _with_teacher_outputs(config: Any, workdir: str,
                          train: list) -> tuple[list, np.ndarray]:
  """Sequence-level distillation (lm/tasks/distillation.py): the gold pairs (weight alpha) and
  the pairs of each source with the teacher's output (weight 1 - alpha; an empty output is
  skipped), without the side of weight 0."""
  outputs = distillation.teacher_sequences(config, workdir, [r.values["source"] for r in train])
  taught = [
      reader.Record({"source": r.values["source"], "target": output},
                    f"{r.where} (the teacher's output)")
      for r, output in zip(train, outputs) if output.strip()
  ]
  alpha = config.distill.alpha
  gold = train if alpha > 0 else []
  taught = taught if alpha < 1 else []
  if not gold and not taught:
    raise UserError(f"config.distill.teacher={config.distill.teacher}: its outputs of the "
                    f"training sources are all empty; with config.distill.alpha=0 there is "
                    f"nothing to train on (a teacher that stops at once is untrained?)")
  weights = np.array([alpha] * len(gold) + [1.0 - alpha] * len(taught), np.float32)
  return gold + taught, weights


def teacher_outputs(workdir: str, checkpoint: str, sources: list[str],
                    batch_size: int) -> list[str]:
  """A trained seq2seq run's decoded output of each source text, with its own config.task
  decoding settings (beam_size, length_penalty, max_new_tokens)."""
  from lm.training import checkpoints  # pylint: disable=g-import-not-at-top
  config = checkpoints.load_config(workdir)
  model_cfg, params, tokenizer = checkpoints.load_for_inference(workdir, checkpoint)
  task_cfg = config["task"]
  return Seq2SeqTask.generate(config, model_cfg, params, tokenizer, sources, batch_size,
                              max_new_tokens=task_cfg["max_new_tokens"] or model_cfg.max_len,
                              beam_size=task_cfg["beam_size"],
                              length_penalty=task_cfg["length_penalty"],
                              seed=0)


def _source_ids(tokenizer, task_cfg: Any, text: str, max_len: int) -> tuple[list[int], bool]:
  """`[BOS] source_prefix + text [EOS]` (BOS with config.task.source_bos) cut to max_len; and
  whether it was cut."""
  bos = [tokenizer.special_ids.bos] if task_cfg.get("source_bos", False) else []
  room = max_len - 1 - len(bos)
  ids = list(tokenizer.encode(task_cfg["source_prefix"] + text))
  return bos + ids[:room] + [tokenizer.special_ids.eos], len(ids) > room


def _tokenize(records: list, tokenizer, task_cfg: Any, start_id: int, max_len: int) -> Pairs:
  special = tokenizer.special_ids
  pairs = Pairs([], [], [])
  for record in records:
    source, cut_source = _source_ids(tokenizer, task_cfg, record.values["source"], max_len)
    target = list(tokenizer.encode(record.values["target"]))
    cut_target = len(target) > max_len - 1
    pairs.sources.append(np.array(source, np.int32))
    pairs.targets.append(np.array([start_id, *target[:max_len - 1], special.eos], np.int32))
    pairs.references.append(record.values["target"])
    pairs.num_truncated += int(cut_source or cut_target)
  return pairs
