"""Knowledge distillation into a classifier (Hinton et al. 2015): config.distill.teacher.

The teacher is another classifier's workdir with the same labels (any architecture and
tokenizer: it reads the student's training texts, after augmentation, as text). Its logits
over that transfer set are computed once and cached in the student's workdir
(`teacher_outputs.npz`, keyed by the teacher checkpoint and the texts), so a resumed run or a
rerun does not run the teacher again. The student's per-example loss, config.distill.loss:

  'kl'   alpha * CE(label) + (1 - alpha) * T^2 * KL(teacher_T || student_T)
  'mse'  alpha * CE(label) + (1 - alpha) * mean over classes of (student - teacher logits)^2

where x_T = softmax(logits / T), T = config.distill.temperature (the T^2 keeps the soft term's
gradients on the scale of the hard one's; Hinton et al. 2015), and 'mse' is Tang et al.'s
(2019) loss on the logits. alpha = 1 is plain cross-entropy.
"""

import hashlib
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lm.data import atomic, labels
from lm.data.reader import Record
from lm.errors import UserError
from lm.tasks import supervised
from lm.training import checkpoints

OUTPUTS_FILE = "teacher_outputs.npz"


def teacher_logits(config: Any, workdir: str, records: Sequence[Record],
                   label_set: labels.LabelSet) -> np.ndarray:
  """float32 [N, C]: the teacher's logits of each record's text, from the cache in `workdir`
  when it holds this teacher's outputs for these texts, else computed and cached."""
  teacher = config.distill.teacher
  saved = _check_teacher(teacher, label_set)
  step = _checkpoint_step(teacher, config.distill.teacher_checkpoint)
  key = _fingerprint(os.path.abspath(teacher), step, records)
  path = os.path.join(workdir, OUTPUTS_FILE)
  if os.path.exists(path):
    with np.load(path) as cached:
      if str(cached["fingerprint"]) == key:
        return cached["logits"]
  texts = supervised.as_trained(records, saved["data"].get("clean", ""),
                                saved["data"].get("lowercase", False))
  logits = run_teacher(teacher, str(step), texts, config.train.eval_batch_size)
  with atomic.atomic_writer(path) as f:
    np.savez(f, logits=logits, fingerprint=np.array(key))
  return logits


def run_teacher(teacher: str, checkpoint: str, records: Sequence[Record],
                batch_size: int) -> np.ndarray:
  """float32 [N, C] logits of `teacher`'s checkpoint for `records`."""
  from lm.tasks import classification_predict  # pylint: disable=g-import-not-at-top
  logits, *_ = classification_predict.model_probabilities(teacher, checkpoint, records, None,
                                                          batch_size, logits=True)
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


def _check_teacher(teacher: str, label_set: labels.LabelSet) -> dict:
  """The teacher's saved config; UserError unless it is a classifier with the student's labels."""
  saved = checkpoints.load_config(teacher)
  if saved is None:
    raise UserError(f"config.distill.teacher={teacher}: no config.json; name the workdir of a "
                    f"trained classifier")
  kind = saved.get("task", {}).get("kind")
  if kind != "classification" or saved.get("model", {}).get("architecture") == "tfidf":
    what = "a TF-IDF baseline" if kind == "classification" else f"a {kind!r} run"
    raise UserError(f"config.distill.teacher={teacher}: {what}, not a trained classifier "
                    f"(config.task.kind='classification' with a model) to distill from")
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


def _fingerprint(teacher: str, step: int, records: Sequence[Record]) -> str:
  digest = hashlib.sha256(f"{teacher}\0{step}\0".encode())
  for record in records:
    digest.update(record.values["text"].encode("utf-8", "surrogatepass") + b"\0")
    digest.update(record.values.get("text_pair", "").encode("utf-8", "surrogatepass") + b"\1")
  return digest.hexdigest()
