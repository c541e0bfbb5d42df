"""Knowledge distillation (Hinton et al. 2015): config.distill.teacher.

The teacher is another run's workdir of the student's task kind with the same labels (any
architecture and tokenizer: it reads the student's training data as text):
  classification         a classifier; its logits of each training text (after augmentation)
  token_classification   a tagger; its logits of each training word (read at the word's first
                         piece in the teacher's tokenization, taught at the student's)
  seq2seq                an encoder–decoder; its decoded output of each training source, with
                         its own decoding settings (config.task.beam_size, length_penalty):
                         sequence-level distillation (Kim and Rush 2016, below)
The teacher's outputs over that transfer set are computed once and cached in the student's
workdir (`teacher_outputs.npz`, keyed by the teacher checkpoint and the data), so a resumed run
or a rerun does not run the teacher again; with config.distill.cache_dir, one file per key
there, shared by every student of the same teacher and transfer set (a sweep's seeds, with
config.augment.seed fixed). A classifier's transfer set can take unlabelled texts too
(config.distill.transfer, lm/tasks/transfer_set.py). With config.distill.embeddings='teacher'
the student reads with the teacher's tokenizer and starts from its token embeddings
(lm/training/student_embeddings.py). The student's loss per example (per word for a tagger),
config.distill.loss:

  'kl'   alpha * CE(label) + (1 - alpha) * T^2 * KL(teacher_T || student_T)
  'mse'  alpha * CE(label) + (1 - alpha) * mean over classes of (student - teacher logits)^2

where x_T = softmax(logits / T), T = config.distill.temperature (the T^2 keeps the soft term's
gradients on the scale of the hard one's; Hinton et al. 2015), and 'mse' is Tang et al.'s
(2019) loss on the logits. alpha = 1 is plain cross-entropy.

Hidden-state transfer (classifiers, config.distill.hidden_weight = beta > 0) adds
beta * mean over the width of (W h_s + b - h_t)^2 per example, h the pooled vector each
Transformer's classifier reads (before any pooler): the teacher's are cached with its logits
(`teacher_logits`: [N, C + D]); W, b is a learned map to the teacher's width D (the student's
`transfer_projection`, used in training only), or none when the widths are equal (FitNets'
regressor, Romero et al. 2015, on the sentence vector). Layer-by-layer and attention transfer
(TinyBERT) would need the teacher run beside every training step, its per-token states being
too large to cache (N x T x D per layer); they are not built.

A seq2seq student is taught sequence-level (which works whatever the two tokenizers): it trains
on the pairs (source, teacher's output) with loss weight 1 - alpha beside the gold pairs with
weight alpha (alpha = 0: the teacher's outputs alone, Kim and Rush's Seq-KD); temperature and
config.distill.loss do not apply.
"""

import hashlib
import os
import time
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lm.data import atomic, labels
from lm.data.reader import Record
from lm.errors import UserError
from lm.models import config as model_config
from lm.tasks import supervised
from lm.training import checkpoints

OUTPUTS_FILE = "teacher_outputs.npz"


def teacher_logits(config: Any, workdir: str, records: Sequence[Record],
                   label_set: labels.LabelSet, part: str = "") -> np.ndarray:
  """float32 [N, C]: a classifier teacher's logits of each record's text; with hidden-state
  transfer (config.distill.hidden_weight), [N, C + D]: its pooled vectors after them
  (`split_outputs`). Cached; `part` names a second transfer set cached beside the training
  texts', e.g. 'transfer'."""
  pooled = bool(config.distill.get("hidden_weight", 0.0))

  def compute(teacher: str, step: int, saved: dict) -> np.ndarray:
    texts = supervised.as_trained(records, saved["data"].get("clean", ""),
                                  saved["data"].get("lowercase", False))
    return np.asarray(run_teacher(teacher, str(step), texts, config.train.eval_batch_size,
                                  pooled), np.float32)

  items = ((r.values["text"], r.values.get("text_pair", "")) for r in records)
  return _cached(config, workdir, "classification", label_set, items, compute, part,
                 variant="pooled" if pooled else "")


def split_outputs(outputs_NxK: np.ndarray,
                  num_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
  """A classifier teacher's cached outputs as (logits [N, C], pooled vectors [N, D] or None)."""
  if outputs_NxK.shape[1] == num_classes:
    return outputs_NxK, None
  return outputs_NxK[:, :num_classes], outputs_NxK[:, num_classes:]


def teacher_width(teacher: str, saved: dict) -> int:
  """The width of a Transformer classifier teacher's pooled vector (config.model.embed_dim of
  its `saved` config, from `check_teacher`); UserError for a teacher of another architecture."""
  model = saved.get("model", {})
  architecture = model.get("architecture", "transformer")
  if architecture != "transformer":
    raise UserError(f"config.distill.hidden_weight: the teacher {teacher} is a "
                    f"{architecture!r} model; hidden-state transfer reads a Transformer's pooled "
                    f"vector (set config.distill.hidden_weight=0)")
  return int(model["embed_dim"])


def hidden_loss(student_BxD: jax.Array, teacher_BxD: jax.Array) -> jax.Array:
  """Per-example mean over the width of the squared difference of two pooled vectors."""
  difference_BxD = student_BxD.astype(jnp.float32) - teacher_BxD.astype(jnp.float32)
  return jnp.mean(jnp.square(difference_BxD), axis=-1)


def teacher_word_logits(config: Any, workdir: str, sentences: Sequence[Sequence[str]],
                        word_types: Sequence[Sequence[int]] | None,
                        label_set: labels.LabelSet) -> list[np.ndarray]:
  """float32 [W_s, C] for each sentence: a tagger teacher's logits of each word (cached)."""
  def compute(teacher: str, step: int, saved: dict) -> np.ndarray:
    from lm.tasks import token_classification  # pylint: disable=g-import-not-at-top
    digits = saved["data"].get("position_digits", "keep")
    if digits != config.data.position_digits:
      raise UserError(f"config.distill.teacher={teacher}: it read its words with "
                      f"config.data.position_digits={digits!r}, the student with "
                      f"{config.data.position_digits!r}; use the same")
    per_word = token_classification.teacher_word_logits(teacher, str(step), sentences,
                                                        word_types,
                                                        config.train.eval_batch_size)
    return np.concatenate(per_word).astype(np.float32)

  items = ("\0".join(words) for words in sentences)
  flat = _cached(config, workdir, "token_classification", label_set, items, compute)
  return np.split(flat, np.cumsum([len(words) for words in sentences])[:-1])


def teacher_sequences(config: Any, workdir: str, sources: Sequence[str]) -> list[str]:
  """A seq2seq teacher's decoded output of each source text (cached)."""
  def compute(teacher: str, step: int, saved: dict) -> np.ndarray:
    del saved
    from lm.tasks import seq2seq  # pylint: disable=g-import-not-at-top
    outputs = seq2seq.teacher_outputs(teacher, str(step), sources, config.train.eval_batch_size)
    return np.array(outputs, dtype=str)

  return [str(text) for text in _cached(config, workdir, "seq2seq", None, sources, compute)]


def _cached(config: Any, workdir: str, kind: str, label_set: labels.LabelSet | None,
            items: Iterable[Any], compute: Callable[[str, int, dict], np.ndarray],
            part: str = "", variant: str = "") -> np.ndarray:
  """The teacher's outputs (an array) over the transfer set `items` (strings or tuples of them):
  from the cache in `workdir` when it holds this teacher checkpoint's outputs for these items,
  else `compute(teacher, step, teacher's config)`, then cached. A `variant` of the outputs
  (e.g. with pooled vectors) is cached under a key of its own."""
  teacher = config.distill.teacher
  saved = check_teacher(teacher, kind, label_set)
  step = _checkpoint_step(teacher, config.distill.teacher_checkpoint)
  items = list(items)
  key = _fingerprint(os.path.abspath(teacher), step, items, variant)
  path = cache_path(config.distill.cache_dir, workdir, key, part)
  if os.path.exists(path):
    with np.load(path) as cached:
      if str(cached["fingerprint"]) == key:
        print(f"Distillation: the teacher's outputs of {len(items):,} training items from "
              f"{path}", flush=True)
        return cached["logits"]
  print(f"Distillation: running the teacher {teacher} (step {step}) over {len(items):,} "
        f"training items, once ...", flush=True)
  start = time.perf_counter()
  outputs = compute(teacher, step, saved)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with atomic.atomic_writer(path) as f:
    np.savez(f, logits=outputs, fingerprint=np.array(key))
  print(f"Distillation: the teacher's pass took {time.perf_counter() - start:.0f} s; cached in "
        f"{path}", flush=True)
  return outputs


def cache_path(cache_dir: str, workdir: str, fingerprint: str, part: str = "") -> str:
  """Where the teacher's outputs for `fingerprint` are cached: the student's workdir (one file
  per `part`), or one file per fingerprint in config.distill.cache_dir (shared by students of
  the teacher)."""
  stem, extension = os.path.splitext(OUTPUTS_FILE)
  if not cache_dir:
    return os.path.join(workdir, f"{stem}{'_' + part if part else ''}{extension}")
  return os.path.join(cache_dir, f"{stem}-{fingerprint[:16]}{extension}")


def run_teacher(teacher: str, checkpoint: str, records: Sequence[Record], batch_size: int,
                pooled: bool = False) -> np.ndarray:
  """float32 [N, C] logits of `teacher`'s checkpoint for `records` (with `pooled`, [N, C + D]:
  its pooled vectors after them)."""
  from lm.tasks import classification_predict  # pylint: disable=g-import-not-at-top
  logits, *_ = classification_predict.model_probabilities(teacher, checkpoint, records, None,
                                                          batch_size, logits=True, pooled=pooled)
  return np.asarray(logits, np.float32)


LOSSES = ("kl", "mse")


def distillation_loss(logits_BxC: jax.Array, teacher_logits_BxC: jax.Array,
                      hard_loss_B: jax.Array, *, alpha: float, temperature: float,
                      loss: str = "kl") -> jax.Array:
  """Per-example alpha * `hard_loss_B` + (1 - alpha) * the soft loss (module doc)."""
  student_BxC = logits_BxC.astype(jnp.float32)
  teacher_BxC = teacher_logits_BxC.astype(jnp.float32)
  if loss == "mse":
    soft_B = jnp.mean(jnp.square(student_BxC - teacher_BxC), axis=-1)
  else:
    t = temperature
    soft_B = t * t * optax.losses.kl_divergence_with_log_targets(
        jax.nn.log_softmax(student_BxC / t, axis=-1), jax.nn.log_softmax(teacher_BxC / t, axis=-1))
  return alpha * hard_loss_B + (1.0 - alpha) * soft_B


def taught(distill: Any, logits: jax.Array, batch: dict, hard_loss: jax.Array) -> jax.Array:
  """`hard_loss` (per example or per token), or with the batch's `teacher_logits` the
  distillation loss of config.distill (`distill`)."""
  if "teacher_logits" not in batch:
    return hard_loss
  return distillation_loss(logits, batch["teacher_logits"], hard_loss, alpha=distill.alpha,
                           temperature=distill.temperature, loss=distill.loss)


def check_teacher(teacher: str, kind: str, label_set: labels.LabelSet | None) -> dict:
  """The teacher's saved config; UserError unless it is a `kind` run (with a model) with the
  student's labels (`label_set`; None: a task without labels)."""
  saved = checkpoints.load_config(teacher)
  what = {"classification": "classifier", "token_classification": "tagger"}.get(kind, kind)
  if saved is None:
    raise UserError(f"config.distill.teacher={teacher}: no config.json; name the workdir of a "
                    f"trained {what}")
  teacher_kind = saved.get("task", {}).get("kind")
  if teacher_kind != kind or model_config.is_tfidf(saved):
    found = "a TF-IDF baseline" if teacher_kind == kind else f"a {teacher_kind!r} run"
    raise UserError(f"config.distill.teacher={teacher}: {found}, not a trained {what} "
                    f"(config.task.kind={kind!r} with a model) to distill from")
  if label_set is None:
    return saved
  teacher_labels = labels.load(teacher).names
  if tuple(teacher_labels) != tuple(label_set.names):
    raise UserError(f"config.distill.teacher={teacher}: its labels ({', '.join(teacher_labels)})"
                    f" differ from the student's ({', '.join(label_set.names)}, "
                    f"config.data.labels); they must be the same, in the same order")
  return saved


def _checkpoint_step(teacher: str, which: str) -> int:
  checkpointer = checkpoints.Checkpointer(teacher, read_only=True)
  try:
    return checkpointer.pick_step(which, config_key="config.distill.teacher_checkpoint")
  finally:
    checkpointer.close()


def _fingerprint(teacher: str, step: int, items: Iterable[Any], variant: str = "") -> str:
  prefix = f"{teacher}\0{step}\0" + (f"{variant}\0" if variant else "")
  digest = hashlib.sha256(prefix.encode())
  for item in items:
    for part in (item,) if isinstance(item, str) else item:
      digest.update(part.encode("utf-8", "surrogatepass") + b"\1")
    digest.update(b"\2")
  return digest.hexdigest()
