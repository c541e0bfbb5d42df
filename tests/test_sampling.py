"""lm.sampling (filtering, cached batched decoding) and the lm.generate CLI."""

import functools
import os
import subprocess
import sys
import types

from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import generate, sampling
from lm.data.tokenizers import EOS_ID, ByteTokenizer
from lm.errors import UserError
from lm.models.config import ModelConfig
from lm.models.transformer import Transformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, scope="module")
def strict_rank_promotion():
  with jax.numpy_rank_promotion("raise"):
    yield


def make_model(vocab_size=37, seed=0, **overrides):
  """A small model with NumPy-drawn parameters: fast (no initializer compile) and peaked
  enough that greedy decoding has no near-ties."""
  fields = dict(vocab_size=vocab_size, num_layers=2, num_heads=4, embed_dim=32, max_len=16)
  model = Transformer(ModelConfig(**{**fields, **overrides}).validate())
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    mean = 1.0 if path[-1].key == "scale" else 0.0
    return jnp.asarray(rng.normal(mean, 0.3, leaf.shape), jnp.float32)

  return model, jax.tree_util.tree_map_with_path(draw, nn.meta.unbox(shapes["params"]))


MODELS = {
    "learned": dict(positions="learned"),
    "rope-gqa": dict(positions="rope", num_kv_heads=2, norm="rmsnorm", mlp="swiglu"),
    "one-layer": dict(num_layers=1),  # Faster to compile, where depth does not matter.
}


@functools.cache
def model_named(name):
  return make_model(**MODELS[name])


# filter_logits ---------------------------------------------------------------------------------


def reference_filter(logits_BxV: np.ndarray, top_k: int, top_p: float) -> np.ndarray:
  """Boolean mask of kept tokens, from sorting each row in float64."""
  keep_BxV = np.ones(logits_BxV.shape, bool)
  for b, row in enumerate(logits_BxV.astype(np.float64)):
    order = np.argsort(-row)
    if top_k > 0:
      keep_BxV[b, order[top_k:]] = False
    kept = order[keep_BxV[b, order]]
    probs = np.exp(row[kept] - row[kept].max())
    probs /= probs.sum()
    # Smallest prefix whose mass reaches top_p.
    num = int(np.searchsorted(np.cumsum(probs), top_p) + 1) if top_p < 1 else len(kept)
    keep_BxV[b, kept[num:]] = False
  return keep_BxV


@pytest.mark.parametrize("top_k,top_p", [
    (0, 1.0),
    (1, 1.0),
    (5, 1.0),
    (49, 1.0),
    (50, 1.0),
    (80, 1.0),
    (0, 0.5),
    (0, 0.9),
    (0, 0.999),
    (0, 1e-6),
    (10, 0.8),
    (3, 0.99),
])
def test_filter_logits_keeps_top_k_and_nucleus_sets(top_k, top_p):
  rng = np.random.default_rng(top_k * 100 + int(top_p * 1000))
  logits_BxV = (rng.normal(size=(8, 50)) * rng.uniform(0.5, 4, size=(8, 1))).astype(np.float32)
  assert len(np.unique(logits_BxV)) == logits_BxV.size  # No ties.

  filtered_BxV = np.asarray(
      sampling.filter_logits(jnp.asarray(logits_BxV), top_k=top_k, top_p=top_p))

  keep_BxV = reference_filter(logits_BxV, top_k, top_p)
  np.testing.assert_array_equal(np.isfinite(filtered_BxV), keep_BxV)
  np.testing.assert_array_equal(filtered_BxV[keep_BxV], logits_BxV[keep_BxV])
  assert np.all(filtered_BxV[~keep_BxV] == -np.inf)
  if top_k and top_p == 1:
    assert np.all(keep_BxV.sum(-1) == min(top_k, 50))


def test_filter_logits_always_keeps_the_most_likely_token():
  logits_BxV = jnp.array([[0.0, 10.0, 1.0], [3.0, 3.0 - 1e-3, -5.0]])
  filtered_BxV = sampling.filter_logits(logits_BxV, top_p=1e-9)
  np.testing.assert_array_equal(np.isfinite(filtered_BxV),
                                [[False, True, False], [True, False, False]])


def test_sampling_respects_the_filters():
  logits_BxV = jnp.asarray(np.random.default_rng(0).normal(size=(4, 30)), jnp.float32)
  keys = jax.random.split(jax.random.PRNGKey(0), 500)
  sample = jax.jit(
      jax.vmap(
          functools.partial(sampling.sample_logits, logits_BxV, temperature=1.5, top_k=8,
                            top_p=0.7)))
  samples_NxB = np.asarray(sample(keys))
  keep_BxV = reference_filter(np.asarray(logits_BxV) / 1.5, top_k=8, top_p=0.7)
  for b in range(4):
    assert set(samples_NxB[:, b]) == set(np.flatnonzero(keep_BxV[b]))  # 500 draws hit them all.
  greedy_B = sampling.sample_logits(logits_BxV, keys[0], temperature=0.0, top_k=0, top_p=1.0)
  np.testing.assert_array_equal(greedy_B, np.argmax(logits_BxV, axis=-1))


# generate_tokens --------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames="model")
def forward(model, params, tokens_BxT):
  return model.apply({"params": params}, tokens_BxT)


def naive_greedy(model, params, prompt, max_new_tokens):
  """Greedy decoding that recomputes the whole forward pass for every new token, on at most
  the last max_len tokens."""
  S = model.config.max_len
  tokens = list(prompt)
  for _ in range(max_new_tokens):
    context = tokens[-S:]
    # Padding after the last token cannot change its logits (the model is causal), and a fixed
    # shape compiles once.
    padded_1xS = jnp.asarray([context + [0] * (S - len(context))], jnp.int32)
    tokens.append(int(np.argmax(forward(model, params, padded_1xS)[0, len(context) - 1])))
  return tokens[len(prompt):]


PROMPTS = [[5, 9, 3], [7], [1, 2, 3, 4, 5], [11, 12, 13]]


# 8 new tokens stay within the context of 16; 20 go past it onto the sliding window.
@pytest.mark.parametrize("name,max_new_tokens", [("learned", 8), ("learned", 20), ("rope-gqa", 20)])
def test_greedy_with_cache_equals_naive_recomputation(name, max_new_tokens):
  model, params = model_named(name)
  out = sampling.generate_tokens(model,
                                 params,
                                 PROMPTS,
                                 max_new_tokens=max_new_tokens,
                                 rng=jax.random.PRNGKey(0),
                                 temperature=0.0)
  assert [len(row) for row in out] == [max_new_tokens] * len(PROMPTS)
  assert out == [naive_greedy(model, params, prompt, max_new_tokens) for prompt in PROMPTS]


def test_generation_stops_before_eos():
  model, params = model_named("learned")
  greedy = sampling.generate_tokens(model,
                                    params,
                                    PROMPTS,
                                    max_new_tokens=8,
                                    rng=jax.random.PRNGKey(0),
                                    temperature=0.0)
  eos = greedy[0][3]
  out = sampling.generate_tokens(model,
                                 params,
                                 PROMPTS,
                                 max_new_tokens=8,
                                 rng=jax.random.PRNGKey(0),
                                 temperature=0.0,
                                 eos_id=eos)
  assert out == [row[:row.index(eos)] if eos in row else row for row in greedy]
  assert len(out[0]) <= 3


def test_seeds():
  model, params = model_named("one-layer")

  def sample(seed):
    # The longest prompt (5) plus 11 new tokens fills max_len = 16 exactly.
    return sampling.generate_tokens(model,
                                    params,
                                    PROMPTS,
                                    max_new_tokens=11,
                                    rng=jax.random.PRNGKey(seed),
                                    temperature=1.0)

  first = sample(0)
  assert first == sample(0)
  assert first != sample(1)
  assert all(len(row) == 11 for row in first)


def test_top_k_1_sampling_is_greedy():
  model, params = model_named("rope-gqa")
  generate = functools.partial(sampling.generate_tokens,
                               model,
                               params,
                               PROMPTS,
                               max_new_tokens=20,
                               rng=jax.random.PRNGKey(3))
  assert generate(temperature=1.0, top_k=1) == generate(temperature=0.0)


def test_decode_step_is_traced_once_not_per_token():
  traced = []

  class CountingTransformer(Transformer):

    def __call__(self, tokens_BxT, *args, **kwargs):
      traced.append(tokens_BxT.shape)
      return super().__call__(tokens_BxT, *args, **kwargs)

  plain_model, params = model_named("one-layer")
  model = CountingTransformer(plain_model.config)
  # Traces: the empty cache, the prefill, the cached step and (past the context of 16) the
  # window step; a repeated call hits the jit cache.
  for max_new_tokens, at_most in [(30, 4), (30, 0)]:
    traced.clear()
    out = sampling.generate_tokens(model,
                                   params,
                                   PROMPTS,
                                   max_new_tokens=max_new_tokens,
                                   rng=jax.random.PRNGKey(0))
    assert all(len(row) == max_new_tokens for row in out)
    assert len(traced) <= at_most, traced


def test_init_cache_is_empty():
  model, _ = model_named("rope-gqa")
  cache = sampling.init_cache(model, 3)
  attn = cache["block_0"]["attn"]
  assert attn["key"].shape == attn["value"].shape == (3, 2, 16, 8)  # [B, K, S, Dh]
  assert int(attn["index"]) == 0 and not np.any(attn["key"])


def test_user_errors():
  model, params = model_named("one-layer")
  generate = functools.partial(sampling.generate_tokens, model, params, rng=jax.random.PRNGKey(0))
  with pytest.raises(UserError,
                     match=r"prompt 2 has 17 tokens, more than the model's context "
                     r"config.model.max_len = 16; use a shorter prompt"):
    generate([[1], [5] * 17], max_new_tokens=1)
  with pytest.raises(UserError, match="prompt 2 is empty"):
    generate([[1], []], max_new_tokens=1)
  with pytest.raises(UserError, match="no prompts"):
    generate([], max_new_tokens=1)
  with pytest.raises(UserError, match="outside the vocabulary"):
    generate([[37]], max_new_tokens=1)
  with pytest.raises(UserError, match="top_p"):
    generate([[1]], max_new_tokens=1, top_p=0.0)
  with pytest.raises(UserError, match="temperature"):
    generate([[1]], max_new_tokens=1, temperature=-1.0)
  with pytest.raises(UserError, match="top_k"):
    generate([[1]], max_new_tokens=1, top_k=-2)
  assert generate([[1], [2, 3]], max_new_tokens=0) == [[], []]


# lm.generate ---------------------------------------------------------------------------------


@pytest.fixture
def byte_model():
  return make_model(vocab_size=ByteTokenizer().vocab_size, num_layers=1, max_len=32)


@pytest.fixture
def run_cli(monkeypatch, capsys):
  """Runs generate.main with these flags and a fake load_for_inference (of a causal LM); returns
  (exit code, stdout, stderr)."""

  def run(argv, load_for_inference):
    checkpoints = types.ModuleType("lm.training.checkpoints")
    checkpoints.load_for_inference = load_for_inference
    checkpoints.load_config = lambda workdir: {"task": {"kind": "causal_lm"}}
    monkeypatch.setitem(sys.modules, "lm.training.checkpoints", checkpoints)
    flags.FLAGS.unparse_flags()
    try:
      remaining = flags.FLAGS(["generate"] + argv)
      try:
        generate.main(remaining)
        code = 0
      except SystemExit as e:
        code = e.code
    finally:
      flags.FLAGS.unparse_flags()
    out, err = capsys.readouterr()
    return code, out, err

  return run


def test_cli_reports_a_missing_checkpoint(run_cli):

  def load_for_inference(workdir):
    raise UserError(f"{workdir}: no checkpoint here; train first")

  code, out, err = run_cli(["--workdir=/nowhere", "--prompt=hi"], load_for_inference)
  assert (code, out, err) == (2, "", "error: /nowhere: no checkpoint here; train first\n")


def test_cli_prints_samples(run_cli, byte_model):
  model, params = byte_model
  tokenizer = ByteTokenizer()
  code, out, err = run_cli(
      ["--workdir=/run", "--prompt=To be", "--prompt=or", "--max_new_tokens=6", "--temperature=0"],
      lambda workdir: (model.config, params, tokenizer))
  assert code == 0 and err == ""
  samples = sampling.generate_text(model.config,
                                   params,
                                   tokenizer, ["To be", "or"],
                                   max_new_tokens=6,
                                   temperature=0.0,
                                   top_k=0,
                                   top_p=1.0,
                                   seed=0)
  assert out == f"--- prompt 1 ---\n{samples[0]}\n--- prompt 2 ---\n{samples[1]}\n"
  prompts = [tokenizer.encode("To be"), tokenizer.encode("or")]
  new_tokens = sampling.generate_tokens(model,
                                        params,
                                        prompts,
                                        max_new_tokens=6,
                                        rng=jax.random.PRNGKey(0),
                                        temperature=0.0,
                                        eos_id=EOS_ID)
  assert samples == [
      "To be" + tokenizer.decode(new_tokens[0]), "or" + tokenizer.decode(new_tokens[1])
  ]


def test_cli_default_prompt_is_a_newline(run_cli, byte_model):
  model, params = byte_model
  code, out, _ = run_cli(["--workdir=/run", "--max_new_tokens=3"], lambda workdir:
                         (model.config, params, ByteTokenizer()))
  assert code == 0 and out.startswith("--- prompt 1 ---\n\n") and out.count("--- prompt") == 1


@pytest.mark.parametrize("argv,message", [
    (["--workdir=/run", "--prompt="], "error: --prompt number 1 is empty"),
    (["--workdir=/run", "--prompt=" + "x" * 33
     ], "error: prompt 1 has 33 tokens, more than the model's context config.model.max_len = 32"),
    (["--workdir=/run", "--prompt=hi", "--top_p=2"], "error: top_p must be in (0, 1]"),
])
def test_cli_user_errors(run_cli, byte_model, argv, message):
  model, params = byte_model
  code, out, err = run_cli(argv, lambda workdir: (model.config, params, ByteTokenizer()))
  assert code == 2 and out == "" and err.startswith(message) and err.count("\n") == 1


@pytest.mark.parametrize("argv,message", [
    (["--prompt=hi"], "error: --workdir is required (the training run directory)"),
    (["--workdir=/run", "--max_new_tokens=many"
     ], "error: flag --max_new_tokens=many: invalid literal for int() with base 10: 'many'"),
])
def test_cli_process_exits_2_without_traceback(argv, message):
  result = subprocess.run([sys.executable, "-m", "lm.generate"] + argv,
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=120,
                          env={
                              **os.environ, "JAX_PLATFORMS": "cpu"
                          })
  assert (result.returncode, result.stdout, result.stderr) == (2, "", message + "\n")
