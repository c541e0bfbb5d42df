"""attention_kernels against a float64 NumPy reference.

The splash kernel runs here in Pallas interpret mode (the module does so off TPU). cuDNN runs
only on an NVIDIA GPU: there the `requires_cuda` tests run it against the reference (values,
gradients, segment isolation); without one its path is only lowered for CUDA.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas.ops.tpu import splash_attention as splash

from lm.errors import UserError
from lm.models import attention_kernels

B, H, Dh = 2, 4, 16
ON_GPU = jax.default_backend() == "gpu"
requires_cuda = pytest.mark.skipif(not ON_GPU, reason="cuDNN attention needs an NVIDIA GPU")
# Every implementation that can run here in float32 / in bfloat16.
FLOAT32_IMPLEMENTATIONS = ["xla", "splash"]
BFLOAT16_IMPLEMENTATIONS = ["xla", "splash"] + (["cudnn"] if ON_GPU else [])


def reference(q_BxTxHxDh, k_BxSxKxDh, v_BxSxKxDh, segment_ids_BxT=None, mask_BxTxS=None,
              causal=True) -> np.ndarray:
  """Softmax attention in float64 with explicit loops over batch and heads."""
  q, k, v = (np.asarray(x, np.float64) for x in (q_BxTxHxDh, k_BxSxKxDh, v_BxSxKxDh))
  _, T, num_heads, head_dim = q.shape
  S, K = k.shape[1:3]
  out = np.zeros_like(q)
  for b in range(q.shape[0]):
    allowed_TxS = np.ones((T, S), bool)
    if causal:
      allowed_TxS &= np.arange(S)[None, :] <= np.arange(T)[:, None]
    if segment_ids_BxT is not None:
      ids = np.asarray(segment_ids_BxT[b])
      allowed_TxS &= ids[:, None] == ids[None, :]
    if mask_BxTxS is not None:
      allowed_TxS &= np.asarray(mask_BxTxS[b])
    for h in range(num_heads):
      kv = h // (num_heads // K)
      scores_TxS = q[b, :, h] @ k[b, :, kv].T / np.sqrt(head_dim)
      scores_TxS = np.where(allowed_TxS, scores_TxS, -np.inf)
      p_TxS = np.exp(scores_TxS - scores_TxS.max(axis=1, keepdims=True))
      out[b, :, h] = (p_TxS / p_TxS.sum(axis=1, keepdims=True)) @ v[b, :, kv]
  return out


def random_qkv(T, K, seed=0, dtype=np.float32, S=None):
  rng = np.random.default_rng(seed)
  S = S or T
  shapes = [(B, T, H, Dh), (B, S, K, Dh), (B, S, K, Dh)]
  return tuple(rng.normal(size=shape).astype(dtype) for shape in shapes)


def packed_segment_ids(T) -> np.ndarray:
  """Row 0: three documents (one of a single token); row 1: two, the first of one token."""
  first = T // 2
  row0 = np.repeat([3, 4, 5], [first, 1, T - first - 1])
  row1 = np.repeat([1, 2], [1, T - 1])
  return np.stack([row0, row1]).astype(np.int32)


@functools.partial(jax.jit, static_argnames=("implementation", "causal"))
def attend(q, k, v, segment_ids=None, mask=None, *, implementation, causal=True):
  return attention_kernels.dot_product_attention(q, k, v, implementation=implementation,
                                                 segment_ids_BxT=segment_ids, mask_BxTxS=mask,
                                                 causal=causal)


@pytest.mark.parametrize("K", [4, 2, 1])
@pytest.mark.parametrize("packed", [False, True])
def test_xla_matches_reference(K, packed):
  q, k, v = random_qkv(37, K)
  segment_ids = packed_segment_ids(37) if packed else None
  out = attend(q, k, v, segment_ids, implementation="xla")
  np.testing.assert_allclose(out, reference(q, k, v, segment_ids), atol=1e-5, rtol=1e-5)


def test_xla_decode_mask():
  """Three new queries at positions 5..7 of a 16-slot cache see slots 0..position."""
  q, _, _ = random_qkv(3, 2)
  _, k, v = random_qkv(3, 2, seed=1, S=16)
  position_T = 5 + np.arange(3)
  mask_BxTxS = np.broadcast_to(np.arange(16)[None, :] <= position_T[:, None], (B, 3, 16))
  # The mask also wins over an implementation that cannot take it.
  for implementation in ("xla", "splash"):
    out = attend(q, k, v, mask=mask_BxTxS, implementation=implementation, causal=False)
    np.testing.assert_allclose(out, reference(q, k, v, mask_BxTxS=mask_BxTxS, causal=False),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "K, packed, T, causal",
    [
        (2, False, 128, True),
        (2, True, 128, True),
        (1, True, 128, True),
        (4, True, 100, True),  # Padded to 128.
        (2, True, 100, False),  # Padding gets a segment of its own.
        (2, False, 100, False),
    ])
def test_splash_matches_reference(K, packed, T, causal):
  q, k, v = random_qkv(T, K)
  segment_ids = packed_segment_ids(T) if packed else None
  out = attend(q, k, v, segment_ids, implementation="splash", causal=causal)
  np.testing.assert_allclose(out, reference(q, k, v, segment_ids, causal=causal), atol=1e-5,
                             rtol=1e-5)


def test_splash_kernel_in_tpu_interpret_mode():
  """The kernel as configured, under the interpreter that simulates TPU memory (bounds, DMAs).

  That interpreter cannot run a vmapped kernel in JAX 0.10 (it does not count vmap's grid
  dimension), so the examples go one by one here.
  """
  q, k, v = random_qkv(128, 2)
  segment_ids = packed_segment_ids(128)
  kernel = attention_kernels._splash_kernel(H, 128, causal=True)  # pylint: disable=protected-access

  def one_example(args):
    q_TxHxDh, k_TxKxDh, v_TxKxDh, ids_T = args
    heads_first = lambda x: jnp.swapaxes(x, 0, 1)
    out_HxTxDh = kernel(heads_first(q_TxHxDh * Dh**-0.5), heads_first(k_TxKxDh),
                        heads_first(v_TxKxDh), splash.SegmentIds(ids_T, ids_T))
    return heads_first(out_HxTxDh)

  with pltpu.force_tpu_interpret_mode():
    out = jax.jit(lambda *args: jax.lax.map(one_example, args))(q, k, v, segment_ids)
  np.testing.assert_allclose(out, reference(q, k, v, segment_ids), atol=1e-5, rtol=1e-5)


def test_splash_gradients_match_xla():
  """The backward kernels (dq, dk/dv), with grouped heads, segments and padding."""
  q, k, v = random_qkv(100, 2)
  segment_ids = packed_segment_ids(100)
  cotangent = np.random.default_rng(1).normal(size=q.shape).astype(np.float32)

  def grads(implementation):
    loss = lambda *qkv: jnp.sum(attend(*qkv, segment_ids, implementation=implementation) *
                                cotangent)
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)

  for name, got, want in zip("qkv", grads("splash"), grads("xla")):
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4, err_msg=f"d{name}")


@pytest.mark.parametrize("implementation", BFLOAT16_IMPLEMENTATIONS)
def test_bfloat16(implementation):
  q, k, v = random_qkv(128, 2, dtype=jnp.bfloat16)
  segment_ids = packed_segment_ids(128)
  out = attend(q, k, v, segment_ids, implementation=implementation)
  assert out.dtype == jnp.bfloat16
  want = reference(q, k, v, segment_ids)
  np.testing.assert_allclose(np.asarray(out, np.float64), want, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("implementation", FLOAT32_IMPLEMENTATIONS + (["cudnn"] if ON_GPU else []))
def test_segments_are_isolated_and_causal(implementation):
  T = 128
  dtype = jnp.bfloat16 if implementation == "cudnn" else np.float32
  q, k, v = random_qkv(T, 2, dtype=dtype)
  segment_ids = packed_segment_ids(T)
  out = np.asarray(attend(q, k, v, segment_ids, implementation=implementation), np.float32)
  rng = np.random.default_rng(2)

  def perturbed(where_BxT):
    return [np.where(where_BxT[:, :, None, None], rng.normal(size=x.shape), x).astype(x.dtype)
            for x in (q, k, v)]

  # Rewriting the first document of each row leaves the others as they were.
  first_BxT = segment_ids == segment_ids[:, :1]
  new = np.asarray(attend(*perturbed(first_BxT), segment_ids, implementation=implementation),
                   np.float32)
  np.testing.assert_allclose(new[~first_BxT], out[~first_BxT], atol=1e-6)
  assert np.abs(new[first_BxT] - out[first_BxT]).max() > 0.1
  # Rewriting the future leaves the past as it was.
  future_BxT = np.broadcast_to(np.arange(T) >= 90, (B, T))
  new = np.asarray(attend(*perturbed(future_BxT), segment_ids, implementation=implementation),
                   np.float32)
  np.testing.assert_allclose(new[:, :90], out[:, :90], atol=1e-6)


@pytest.mark.parametrize("mesh_shape, K", [((2, 1, 2), 2), ((2, 1, 2), 1), ((1, 2, 4), 2)])
def test_splash_under_a_mesh_matches_unsharded(mesh_shape, K):
  """On a (data, fsdp, tensor) mesh the kernel runs per device under shard_map.

  Where `tensor` does not divide the K key/value heads, they are repeated per query head.
  """
  devices = np.array(jax.devices()[:np.prod(mesh_shape)]).reshape(mesh_shape)
  mesh = jax.sharding.Mesh(devices, ("data", "fsdp", "tensor"))
  rules = (("act_batch", ("data", "fsdp")), ("act_heads", "tensor"))
  q, k, v = random_qkv(128, K)
  segment_ids = packed_segment_ids(128)

  def sharded(*args):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh), nn.logical_axis_rules(rules):
      return attention_kernels.dot_product_attention(*args[:3], implementation="splash",
                                                     segment_ids_BxT=args[3])

  args = jax.device_put((q, k, v, segment_ids), jax.sharding.NamedSharding(mesh, jax.P()))
  jaxpr = str(jax.make_jaxpr(sharded)(*args))
  batch = "'data'" if mesh_shape[0] > 1 else "'fsdp'"
  assert "shard_map" in jaxpr and f"P({batch}, None, 'tensor', None)" in jaxpr
  out = jax.jit(sharded)(*args)
  np.testing.assert_allclose(out, attend(q, k, v, segment_ids, implementation="splash"),
                             atol=1e-6, rtol=1e-6)


def test_cudnn_lowers_to_fused_kernels_with_a_segment_bias(monkeypatch):
  """No GPU here: lower for CUDA and check what cuDNN gets (a [B, 1, T, T] bias, causal)."""
  fused = pytest.importorskip("jax._src.cudnn.fused_attention_stablehlo")
  monkeypatch.setattr(fused, "check_cudnn_version", lambda: 90800)  # No cuDNN on this host.
  q, k, v = random_qkv(128, 2, dtype=jnp.bfloat16)
  segment_ids = packed_segment_ids(128)

  def loss(q, k, v):
    out = attention_kernels.dot_product_attention(q, k, v, implementation="cudnn",
                                                  segment_ids_BxT=segment_ids)
    return jnp.sum(out.astype(jnp.float32))

  hlo = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).trace(q, k, v).lower(
      lowering_platforms=("cuda",)).as_text()
  calls = [line for line in hlo.splitlines() if "custom_call @__cudnn$fmha" in line]
  assert len(calls) == 2, calls  # Forward and backward.
  for call in calls:
    assert "ScaleBiasSoftmax" in call and "CAUSAL" in call
    assert f"tensor<{B}x1x128x128xbf16>" in call
    assert f"tensor<{B}x128x2x{Dh}xbf16>" in call  # Grouped keys/values, not repeated.


def relative_error(got, want) -> float:
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return float(np.linalg.norm(got - want) / np.linalg.norm(want))


@requires_cuda
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("K", [4, 2, 1])
@pytest.mark.parametrize("packed", [False, True])
def test_cudnn_matches_reference(dtype, K, packed):
  q, k, v = random_qkv(256, K, dtype=dtype)
  segment_ids = packed_segment_ids(256) if packed else None
  out = attend(q, k, v, segment_ids, implementation="cudnn")
  assert out.dtype == dtype
  # bf16 / fp16 operands: ~1e-3 to 1e-2 relative error against float64.
  assert relative_error(out, reference(q, k, v, segment_ids)) < 1e-2


@requires_cuda
@pytest.mark.parametrize("packed", [False, True])
def test_cudnn_gradients_match_float32_xla(packed):
  """cuDNN's backward kernel in bfloat16 against XLA's gradients on the same values in float32."""
  q, k, v = random_qkv(256, 2, dtype=jnp.bfloat16)
  segment_ids = packed_segment_ids(256) if packed else None
  cotangent = np.random.default_rng(1).normal(size=q.shape).astype(np.float32)

  def grads(implementation, dtype):
    loss = lambda *qkv: jnp.sum(
        attend(*qkv, segment_ids, implementation=implementation).astype(jnp.float32) * cotangent)
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(*(x.astype(dtype) for x in (q, k, v)))

  for name, got, want in zip("qkv", grads("cudnn", jnp.bfloat16), grads("xla", jnp.float32)):
    assert relative_error(got, want) < 2e-2, f"d{name}"


@requires_cuda
def test_cudnn_runs_the_fused_kernel_on_this_gpu():
  q, k, v = random_qkv(256, 2, dtype=jnp.bfloat16)
  compiled = attend.lower(q, k, v, packed_segment_ids(256), implementation="cudnn").compile()
  assert "__cudnn$fmha" in compiled.as_text()


def test_resolve_implementation():
  resolve = attention_kernels.resolve_implementation
  assert resolve("auto", jnp.float32, "cpu") == "xla"
  assert resolve("auto", jnp.bfloat16) == ("cudnn" if ON_GPU else "xla")  # This host.
  assert resolve("auto", jnp.bfloat16, "gpu") == "cudnn"
  assert resolve("auto", "float16", "gpu") == "cudnn"
  assert resolve("auto", jnp.float32, "gpu") == "xla"
  assert resolve("auto", jnp.bfloat16, "rocm") == "xla"
  assert resolve("auto", jnp.float32, "tpu") == "splash"
  assert resolve("xla", jnp.bfloat16, "tpu") == "xla"
  assert resolve("cudnn", jnp.bfloat16, "gpu") == "cudnn"
  assert resolve("splash", jnp.bfloat16, "tpu") == "splash"
  for requested, dtype, platform in [("cudnn", jnp.bfloat16, "cpu"), ("cudnn", "float32", "gpu"),
                                     ("splash", jnp.bfloat16, "gpu"), ("flash", "float32", "cpu")]:
    with pytest.raises(UserError, match="config.model.attention"):
      resolve(requested, dtype, platform)


def test_describe():
  line = attention_kernels.describe("auto", "cudnn", jnp.bfloat16, "gpu")
  assert line == "Attention: cudnn (config.model.attention=auto, gpu, bfloat16)"


def test_unresolved_implementation_is_an_error():
  q, k, v = random_qkv(8, 2)
  with pytest.raises(ValueError, match="resolve"):
    attention_kernels.dot_product_attention(q, k, v, implementation="auto")
