"""Which attention implementation runs, and scaled dot-product attention on each of them.

config.model.attention picks one of:
  xla     `jax.nn.dot_product_attention` lowered by XLA: runs everywhere; the reference.
  cudnn   cuDNN's fused flash attention (NVIDIA GPU, bfloat16/float16).
  splash  the Pallas "splash" (sparse flash) attention kernel for TPU.
  auto    the fastest of them that can run on this platform in this dtype.

Shape letters: B batch, T query length, S key length, H query heads, K key/value heads
(grouped-query attention: query head h uses key/value head h // (H // K)), Dh head dim.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.pallas.ops.tpu import splash_attention as splash
from jax.sharding import PartitionSpec as P

from lm.errors import UserError

IMPLEMENTATIONS = ("auto", "xla", "cudnn", "splash")
_CUDNN_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
# Splash tiles the sequence in blocks of a multiple of 128 (the TPU lane width); the largest
# of these that divides the (padded) length is used. MaxText's defaults are 512.
_SPLASH_BLOCKS = (512, 256, 128)
# Logical axes of q/k/v [B, T, H, Dh] under the trainer's rule table.
_ACT_AXES = ("act_batch", None, "act_heads", None)


def _default_platform() -> str:
  platform = jax.default_backend()
  if platform == "gpu" and "rocm" in getattr(jax.devices()[0].client, "platform_version", ""):
    return "rocm"  # cuDNN is NVIDIA's; JAX names AMD GPUs 'gpu' too.
  return platform


def resolve_implementation(requested: str, dtype, platform: str | None = None) -> str:
  """The concrete implementation for config.model.attention=`requested`.

  Args:
    requested: one of IMPLEMENTATIONS.
    dtype: the compute dtype of q/k/v.
    platform: 'cpu', 'gpu', 'tpu', ... (default: `jax.default_backend()`).

  Returns:
    'auto' -> 'cudnn' on GPU in bfloat16/float16, 'splash' on TPU, 'xla' otherwise; an explicit
    name unchanged.

  Raises:
    UserError: an unknown name, or one that cannot run on this platform in this dtype.
  """
  platform = platform or _default_platform()
  dtype = jnp.dtype(dtype)
  if requested not in IMPLEMENTATIONS:
    raise UserError(f"config.model.attention={requested!r}: must be one of "
                    f"{', '.join(IMPLEMENTATIONS)}")
  cudnn_ok = platform in ("gpu", "cuda") and dtype in _CUDNN_DTYPES
  if requested == "auto":
    return "cudnn" if cudnn_ok else "splash" if platform == "tpu" else "xla"
  if requested == "cudnn" and not cudnn_ok:
    raise UserError(f"config.model.attention='cudnn' needs an NVIDIA GPU and bfloat16 or float16 "
                    f"compute (config.model.dtype); this run is on {platform} in {dtype.name}: "
                    f"use 'auto' or 'xla'")
  if requested == "splash" and platform != "tpu":
    raise UserError(f"config.model.attention='splash' is a TPU kernel; this run is on "
                    f"{platform}: use 'auto' or 'xla'")
  return requested


def describe(requested: str, resolved: str, dtype, platform) -> str:
  """One log line naming what runs, e.g. 'Attention: cudnn (config.model.attention=auto, gpu,
  bfloat16)'."""
  platform = platform or _default_platform()
  return (f"Attention: {resolved} (config.model.attention={requested}, {platform}, "
          f"{jnp.dtype(dtype).name})")


def dot_product_attention(q_BxTxHxDh: jax.Array,
                          k_BxSxKxDh: jax.Array,
                          v_BxSxKxDh: jax.Array,
                          *,
                          implementation: str,
                          segment_ids_BxT: jax.Array | None = None,
                          mask_BxTxS: jax.Array | None = None,
                          bias_BxHxTxS: jax.Array | None = None,
                          scale: float | None = None,
                          causal: bool = True) -> jax.Array:
  """softmax(q k^T * scale + bias + mask) v with grouped-query heads; returns out_BxTxHxDh.

  Args:
    q_BxTxHxDh: queries; H must be a multiple of K.
    k_BxSxKxDh: keys.
    v_BxSxKxDh: values.
    implementation: 'xla', 'cudnn' or 'splash' (see `resolve_implementation`).
    segment_ids_BxT: packed sequences (T == S): query t sees key s only where the ids are equal.
    mask_BxTxS: boolean, True = attend. The KV-cache decode path: it always runs on XLA (few
      queries, an arbitrary mask that the fused kernels do not take).
    bias_BxHxTxS: added to the scores (T5's relative positions; B and H may be 1); on XLA.
    scale: of the scores; None is 1 / sqrt(Dh).
    causal: query t sees keys s <= t.
  """
  if segment_ids_BxT is not None and q_BxTxHxDh.shape[1] != k_BxSxKxDh.shape[1]:
    raise ValueError(f"segment ids need T == S, got q {q_BxTxHxDh.shape}, k {k_BxSxKxDh.shape}")
  plain_xla = mask_BxTxS is not None or bias_BxHxTxS is not None
  if implementation in ("xla", "cudnn") or plain_xla:
    # A decode mask or a bias runs on XLA (few queries, or inputs the fused kernels do not take).
    return _jax_nn(q_BxTxHxDh, k_BxSxKxDh, v_BxSxKxDh, segment_ids_BxT, mask_BxTxS, causal,
                   "xla" if plain_xla else implementation, bias_BxHxTxS, scale)
  if scale is not None:  # Splash scales by 1/sqrt(Dh): fold the difference into the queries.
    q_BxTxHxDh = q_BxTxHxDh * jnp.asarray(scale * q_BxTxHxDh.shape[-1]**0.5, q_BxTxHxDh.dtype)
  if implementation == "splash":
    return _splash(q_BxTxHxDh, k_BxSxKxDh, v_BxSxKxDh, segment_ids_BxT, causal)
  raise ValueError(f"unknown attention implementation {implementation!r}; resolve it first")


def cached_attention(q_BxTxHxDh: jax.Array,
                     k_BxKxSxDh: jax.Array,
                     v_BxKxSxDh: jax.Array,
                     mask_BxTxS: jax.Array,
                     *,
                     bias_BxHxTxS: jax.Array | None = None,
                     scale: float | None = None) -> jax.Array:
  """Attention of a few new queries to a decoding cache laid out heads-major [B, K, S, Dh], as
  `dot_product_attention` with `mask_BxTxS` (True = attend) computes it: the products are batched
  over (B, K) in that layout, so no step copies the cache into another one (transposing every
  layer's cache was most of a beam-search step's memory traffic); scores and softmax in float32.
  Returns out_BxTxHxDh."""
  B, T, H, Dh = q_BxTxHxDh.shape
  K, S = k_BxKxSxDh.shape[1:3]
  G = H // K
  scale = Dh**-0.5 if scale is None else scale
  q_BxKxGxTxDh = jnp.transpose(q_BxTxHxDh.reshape(B, T, K, G, Dh), (0, 2, 3, 1, 4))
  scores_BxKxGxTxS = jnp.einsum("bkgtd,bksd->bkgts", q_BxKxGxTxDh, k_BxKxSxDh,
                                preferred_element_type=jnp.float32) * scale
  if bias_BxHxTxS is not None:
    bias_BxKxGxTxS = bias_BxHxTxS.reshape(bias_BxHxTxS.shape[0], K, G, T, S)
    scores_BxKxGxTxS = scores_BxKxGxTxS + bias_BxKxGxTxS.astype(jnp.float32)
  scores_BxKxGxTxS = jnp.where(mask_BxTxS[:, None, None], scores_BxKxGxTxS, _MASKED)
  probs_BxKxGxTxS = jax.nn.softmax(scores_BxKxGxTxS, axis=-1).astype(v_BxKxSxDh.dtype)
  out_BxKxGxTxDh = jnp.einsum("bkgts,bksd->bkgtd", probs_BxKxGxTxS, v_BxKxSxDh)
  return jnp.transpose(out_BxKxGxTxDh, (0, 3, 1, 2, 4)).reshape(B, T, H, Dh)


# The score of a masked key: exp() of it is 0 next to any real score, and finite.
_MASKED = -1e30


def _segment_mask(segment_ids_BxT: jax.Array) -> jax.Array:
  """[B, 1, T, T]: True where query and key belong to the same segment."""
  return (segment_ids_BxT[:, :, None] == segment_ids_BxT[:, None, :])[:, None]


def _jax_nn(q_BxTxHxDh, k_BxSxKxDh, v_BxSxKxDh, segment_ids_BxT, mask_BxTxS, causal,
            implementation, bias_BxHxTxS=None, scale=None):
  """`jax.nn.dot_product_attention` with segments (and a decode mask) as a [B, 1, T, S] mask.

  On cuDNN, JAX turns the boolean mask into an additive bias (0 / -2^41 in bfloat16) added to
  the logits beside cuDNN's own causal mask. cuDNN's native packing (`q_offsets`/`kv_offsets`,
  the THD layout) would skip cross-segment blocks, but `jax.nn.dot_product_attention` does not
  expose it (only the private `jax._src.cudnn` API does), it needs a static maximum number of
  segments per row and Hopper or later. The bias costs B*T*T compute-dtype values (and as
  much again for its unused gradient in the backward pass), which is small next to the
  activations for T up to a few thousand; with it, cuDNN's backward pass needs an even T.
  """
  mask_Bx1xTxS = None if mask_BxTxS is None else mask_BxTxS[:, None]
  if segment_ids_BxT is not None:
    same_Bx1xTxT = _segment_mask(segment_ids_BxT)
    mask_Bx1xTxS = same_Bx1xTxT if mask_Bx1xTxS is None else mask_Bx1xTxS & same_Bx1xTxT
  return jax.nn.dot_product_attention(q_BxTxHxDh,
                                      k_BxSxKxDh,
                                      v_BxSxKxDh,
                                      bias=bias_BxHxTxS,
                                      mask=mask_Bx1xTxS,
                                      scale=scale,
                                      is_causal=causal,
                                      implementation=implementation)


def _splash(q_BxTxHxDh, k_BxSxKxDh, v_BxSxKxDh, segment_ids_BxT, causal):
  """Splash attention, under `shard_map` when a device mesh is in scope.

  XLA cannot partition a Pallas kernel, so on a mesh each device runs it on its own slice:
  the batch split over the mesh axes of the logical axis `act_batch` and the heads over those
  of `act_heads` (flax's rule table), where they divide evenly.
  """
  mesh = jax.sharding.get_abstract_mesh()
  local = functools.partial(_splash_local, causal=causal)
  if mesh.empty:
    return local(q_BxTxHxDh, k_BxSxKxDh, v_BxSxKxDh, segment_ids_BxT)
  B, _, H, _ = q_BxTxHxDh.shape
  K = k_BxSxKxDh.shape[2]
  batch_axes, _, head_axes, _ = nn.logical_to_mesh_axes(_ACT_AXES)
  batch_axes = _dividing_axes(mesh, batch_axes, B)
  head_axes = _dividing_axes(mesh, head_axes, H)
  if head_axes and K % np.prod([mesh.shape[a] for a in head_axes]):
    # Each device needs the key/value heads of its query heads: give every query head its own.
    k_BxSxKxDh = jnp.repeat(k_BxSxKxDh, H // K, axis=2)
    v_BxSxKxDh = jnp.repeat(v_BxSxKxDh, H // K, axis=2)
  qkv_spec = P(batch_axes, None, head_axes, None)
  args, specs = (q_BxTxHxDh, k_BxSxKxDh, v_BxSxKxDh), (qkv_spec,) * 3
  if segment_ids_BxT is not None:
    args, specs = args + (segment_ids_BxT,), specs + (P(batch_axes, None),)
  # The kernel's outputs do not vary over the mesh axes it is not split on (check_vma would
  # need the Pallas call to declare that).
  return jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=qkv_spec, check_vma=False)(*args)


def _dividing_axes(mesh, axes, dim: int) -> tuple[str, ...] | None:
  """The mesh axes among `axes` (a PartitionSpec entry) that split `dim` evenly."""
  axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
  used, ways = [], 1
  for axis in axes:
    if mesh.shape.get(axis, 1) > 1 and dim % (ways * mesh.shape[axis]) == 0:
      used.append(axis)
      ways *= mesh.shape[axis]
  return tuple(used) or None


def _splash_local(q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh, segment_ids_BxT=None, *, causal):
  """Splash attention on one device: the per-example kernel mapped over the batch."""
  B, T, H, Dh = q_BxTxHxDh.shape
  if k_BxTxKxDh.shape[1] != T:
    raise ValueError(f"splash attention here is self-attention (T == S), got q "
                     f"{q_BxTxHxDh.shape}, k {k_BxTxKxDh.shape}")
  # Pad the sequence to a multiple of 128. Under the causal mask no real query sees a padded
  # key; without it the padding gets a segment id of its own. Padded queries always see at
  # least themselves: splash needs every row to attend somewhere (see `SegmentIds`).
  pad = -T % 128
  if pad:
    if segment_ids_BxT is None and not causal:
      segment_ids_BxT = jnp.zeros((B, T), jnp.int32)
    if segment_ids_BxT is not None:
      fresh = jnp.min(segment_ids_BxT) - 1
      segment_ids_BxT = jnp.concatenate(
          [segment_ids_BxT,
           jnp.broadcast_to(fresh, (B, pad)).astype(segment_ids_BxT.dtype)], 1)
    widths = ((0, 0), (0, pad), (0, 0), (0, 0))
    q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh = (
        jnp.pad(x, widths) for x in (q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh))
  kernel = _splash_kernel(H, T + pad, causal)
  # The kernel takes [heads, T, Dh] and does not scale the logits.
  q_BxHxTxDh = jnp.swapaxes(q_BxTxHxDh * Dh**-0.5, 1, 2)
  k_BxKxTxDh, v_BxKxTxDh = jnp.swapaxes(k_BxTxKxDh, 1, 2), jnp.swapaxes(v_BxTxKxDh, 1, 2)
  segments = None
  if segment_ids_BxT is not None:
    ids_BxT = segment_ids_BxT.astype(jnp.int32)
    segments = splash.SegmentIds(q=ids_BxT, kv=ids_BxT)
  out_BxHxTxDh = jax.vmap(kernel)(q_BxHxTxDh, k_BxKxTxDh, v_BxKxTxDh, segments)
  return jnp.swapaxes(out_BxHxTxDh, 1, 2)[:, :T]


def _splash_kernel(H: int, T: int, causal: bool):
  """The kernel for H query heads over sequences of T (a multiple of 128)."""
  block = next(b for b in _SPLASH_BLOCKS if T % b == 0)
  head_mask = splash.CausalMask((T, T)) if causal else splash.FullMask((T, T))
  blocks = splash.BlockSizes(block_q=block,
                             block_kv=block,
                             block_kv_compute=block,
                             block_q_dkv=block,
                             block_kv_dkv=block,
                             block_kv_dkv_compute=block,
                             block_q_dq=block,
                             block_kv_dq=block)
  # Off TPU (tests) the kernel runs in Pallas interpret mode. `pltpu.force_tpu_interpret_mode`
  # cannot be used instead: in JAX 0.10 its interpreter fails on a vmapped kernel (it does not
  # count the grid dimension that vmap adds against the kernel's dimension_semantics).
  return splash.make_splash_mha(splash.MultiHeadMask([head_mask] * H),
                                block_sizes=blocks,
                                head_shards=1,
                                q_seq_shards=1,
                                interpret=jax.default_backend() != "tpu")
