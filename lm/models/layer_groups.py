"""The layer groups of a model family: which top-level parameter modules are the embeddings,
the blocks (bottom to top) and the head.

Fine-tuning reads them (freezing embeddings and bottom blocks, layer-wise learning-rate decay,
what a linear probe or LoRA trains), so that it acts on any family that states its groups and
refuses one that does not, instead of silently matching nothing. A family's module class
states them with a `layer_groups()` method.
"""

import dataclasses
import re

import jax
import jax.numpy as jnp

EMBEDDINGS, BLOCK, SCANNED, HEAD = "embeddings", "block", "scanned", "head"


@dataclasses.dataclass(frozen=True)
class LayerGroups:
  """Top-level parameter names of one model: `embeddings`; blocks `{block_prefix}{i}` for
  i < num_layers, or all blocks stacked in `scanned` (leaves [num_layers, ...]); `head`; and
  `task_inputs`, embeddings (in `embeddings`) of inputs a fine-tuning task may add, such as
  token types: like the head, they start fresh when a pretrained checkpoint lacks them."""
  embeddings: tuple[str, ...]
  block_prefix: str
  head: tuple[str, ...]
  num_layers: int
  scanned: str = ""
  task_inputs: tuple[str, ...] = ()

  def group_of(self, name: str) -> tuple[str, int | None]:
    """(EMBEDDINGS | BLOCK | SCANNED | HEAD, the block's index or None) of a top-level module;
    a name of no group is an error (a family that forgot one), never silently skipped."""
    if name in self.embeddings:
      return EMBEDDINGS, None
    if name in self.head:
      return HEAD, None
    if self.scanned and name == self.scanned:
      return SCANNED, None
    match = re.fullmatch(re.escape(self.block_prefix) + r"(\d+)", name)
    if match:
      layer = int(match.group(1))
      if layer >= self.num_layers:
        raise ValueError(f"parameters have {name} but num_layers={self.num_layers}")
      return BLOCK, layer
    raise ValueError(f"parameter module {name!r} is in no layer group (embeddings "
                     f"{', '.join(self.embeddings)}; blocks {self.block_prefix}0..; head "
                     f"{', '.join(self.head)}): add it to its family's layer_groups()")

  def stacked(self, params: dict) -> dict:
    """Top-level `params` with the blocks in the scanned layout (`scanned`, leaves [L, ...]);
    unchanged if they are in it, or the family has no scanned layout."""
    if not self.scanned or self.scanned in params:
      return params
    names = [f"{self.block_prefix}{i}" for i in range(self.num_layers)]
    rest = {k: v for k, v in params.items() if k not in names}
    blocks = [params[name] for name in names]
    return {**rest, self.scanned: jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)}

  def unstacked(self, params: dict) -> dict:
    """Top-level `params` with one entry per block (`{block_prefix}{i}`); unchanged if they
    are not in the scanned layout."""
    if not self.scanned or self.scanned not in params:
      return params
    rest = {k: v for k, v in params.items() if k != self.scanned}
    for i in range(self.num_layers):
      rest[f"{self.block_prefix}{i}"] = jax.tree.map(lambda x, i=i: x[i], params[self.scanned])
    return rest
