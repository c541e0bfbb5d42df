"""A distillation student's token embeddings from its teacher's (config.distill.embeddings).

With 'teacher' the student reads with the teacher's tokenizer (copied into its workdir) and its
token embedding table starts as the teacher's, projected onto the table's top principal
components down to the student's width (a narrower student cannot take the rows as they are):
the analogue of Tang et al.'s (2019) word2vec-initialized student, from the model at hand. The
projection is rescaled to the standard deviation of the student's own initializer, so that the
rest of the student (random, at its usual scale) meets inputs of the scale it expects.
"""

from typing import Any

import flax.linen as nn
import jax
import numpy as np

from lm.errors import UserError
from lm.training import checkpoints, init_from

MODES = ("", "teacher")
TABLE = ("token_embed", "embedding")


def principal_projection(table_VxD: np.ndarray, width: int) -> tuple[np.ndarray, float]:
  """[V, width]: the rows of `table_VxD`, centred, in the basis of its `width` leading principal
  components (largest variance first); and the share of the variance they keep."""
  if width > table_VxD.shape[1]:
    raise ValueError(f"width {width} > the table's {table_VxD.shape[1]}")
  centred = np.asarray(table_VxD, np.float64)
  centred = centred - centred.mean(axis=0)
  _, singular_D, components_DxD = np.linalg.svd(centred, full_matrices=False)
  kept = float(np.sum(singular_D[:width]**2) / np.sum(singular_D**2))
  return centred @ components_DxD[:width].T, kept


def from_teacher(config: Any, params: Any) -> tuple[Any, str]:
  """`params` (the student's fresh parameters, on the host) with the token embedding table
  from config.distill.teacher's (module doc), and a note for the run's log."""
  teacher = config.distill.teacher
  checkpointer = checkpoints.Checkpointer(teacher, read_only=True)
  try:
    step = checkpointer.pick_step(config.distill.teacher_checkpoint,
                                  config_key="config.distill.teacher_checkpoint")
    loaded, _ = checkpointer.restore_params(step)
  finally:
    checkpointer.close()
  loaded = nn.meta.unbox(loaded)
  loaded = loaded.get(init_from.BACKBONE, loaded)  # ELECTRA: its discriminator.
  fresh = _table(params)
  try:
    table = np.asarray(loaded[TABLE[0]][TABLE[1]])
  except (KeyError, TypeError):
    table = None
  if table is None or fresh is None:
    raise UserError(f"config.distill.embeddings='teacher': {teacher} or this student has no "
                    f"token embedding table ({'/'.join(TABLE)}); use lm's own model families "
                    f"on both sides, or config.distill.embeddings=''")
  vocab, width = fresh.shape
  if table.shape[0] != vocab or table.shape[1] < width:
    raise UserError(f"config.distill.embeddings='teacher': the teacher's table is "
                    f"{table.shape[0]:,} x {table.shape[1]}, the student's {vocab:,} x {width}; "
                    f"the student needs the teacher's vocabulary (its tokenizer) and a width "
                    f"no larger than the teacher's (config.model.embed_dim)")
  projected, kept = principal_projection(table, width)
  projected = (projected * (float(np.std(fresh)) / max(float(np.std(projected)), 1e-30)))
  projected = projected.astype(fresh.dtype)
  params = jax.tree_util.tree_map_with_path(
      lambda path, x: projected if _is_table(path) else x, params)
  return params, (f"Token embeddings from config.distill.teacher={teacher} (step {step}): "
                  f"{table.shape[0]:,} x {table.shape[1]} projected onto its {width} principal "
                  f"components ({kept:.0%} of its variance)")



def _is_table(path) -> bool:
  return tuple(getattr(key, "key", key) for key in path) == TABLE


def _table(params: Any) -> np.ndarray | None:
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    if _is_table(path):
      return np.asarray(leaf)
  return None
