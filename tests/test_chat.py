"""Chat fine-tuning end to end: a decoder learns the assistant's turns only, evaluates by
generating them, and replies through `lm.generate` (one prompt, or a file of conversations) and
`lm.chat` (a real terminal: a pseudo-terminal) exactly as it trained; a pretrained vocabulary
grows by the role tokens; an imported Qwen2 with a chat template is LoRA-fine-tuned on
conversations and generates."""

import json
import os
import pty
import select
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import torch
import transformers

from lm import chat_session, defaults, sampling
from lm.convert.exporter import export_hf
from lm.convert.importer import import_hf
from lm.data import chat_template, tokenizers
from lm.errors import UserError
from lm.experiment_args import shrink_to_smoke
from lm.models.architecture import make_model
from lm.tasks import chat, registry
from lm.training import checkpoints, trainer
from tests.conftest import REPO
from tests.test_chat_template import write_hf_chat_tokenizer
from tests.test_convert import randomized

WORDS = ["hello", "world", "jax", "flax", "model", "token", "green", "river"]


def conversation(*words: str, system: str = "") -> dict:
  """The user says each word, the assistant answers it in capitals."""
  messages = [{"role": "system", "content": system}] if system else []
  for word in words:
    messages += [{"role": "user", "content": word}, {"role": "assistant", "content": word.upper()}]
  return {"messages": messages}


def write_jsonl(path, rows) -> str:
  path.write_text("".join(json.dumps(row) + "\n" for row in rows))
  return str(path)


def chat_config(source: str, **train):
  config = defaults.base_config()
  config.task.kind = "chat"
  config.data.update(source=source, valid_source=source, byte_fallback=False)
  shrink_to_smoke(config)
  config.model.update(max_len=48, embed_dim=64)
  config.train.update(sample_prompt="", **train)
  return config


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
  """Conversations of one to three turns in random order (one with a system message), and a
  prompt/response pair."""
  rng = np.random.default_rng(0)
  rows = [conversation(w) for w in WORDS] + [
      conversation(*rng.choice(WORDS, size=rng.integers(2, 4))) for _ in range(64)
  ] + [conversation("jax", system="be loud"), {"prompt": "green", "response": "GREEN"}]
  return write_jsonl(tmp_path_factory.mktemp("chats") / "chats.jsonl", rows)


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory, data):
  """A decoder that learned to answer `word` with `WORD` (evaluated by generation)."""
  config = chat_config(data, steps=200, warmup_steps=10, learning_rate=3e-3, batch_size=8,
                       eval_every=200, checkpoint_every=200, log_every=50, eval_examples=12)
  config.task.update(eval_generation=True, max_new_tokens=8)
  workdir = str(tmp_path_factory.mktemp("chat") / "run")
  final = trainer.train_and_evaluate(config, workdir)
  return workdir, final


def test_batches_weigh_only_assistant_tokens(data, tmp_path):
  task = registry.build_task(chat_config(data), str(tmp_path), {})
  template = task.template
  answers = {i for w in WORDS for i in task.tokenizer.encode(w.upper())} | {template.end_id}
  batch = task.train_batches(np.arange(4)).next_batch()
  weighted = batch["targets"][batch["weights"] > 0]
  assert weighted.size and set(weighted.tolist()) <= answers
  for tokens, mask in task.train:  # Every assistant token and end of turn is predicted.
    ends = np.flatnonzero(tokens == template.end_id)
    replies = np.flatnonzero(tokens == template.role_ids["assistant"]) + 1
    assert mask.sum() == sum(ends[ends > r][0] - r + 1 for r in replies)
  assert task.model_config.vocab_size == task.tokenizer.vocab_size + 4


def test_sft_evaluates_by_generation_from_its_training_layout(tmp_path):
  source = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": w, "response": w.upper()}
                                                  for w in WORDS])
  config = chat_config(source)
  config.task.kind = "sft"
  task = registry.build_task(config, str(tmp_path), {})
  first = task.eval_prompts[0]
  assert first.ids == task.generation_ids({}, task.tokenizer, "hello")
  assert (first.reference, first.where) == ("HELLO", f"{source}: line 1")
  assert task.stop_id == task.tokenizer.special_ids.eos


def test_chat_run_learns_the_replies_and_evaluates_by_generating_them(chat_run):
  workdir, final = chat_run
  assert final["eval/loss"] < 0.1
  assert final["eval/exact_match"] == 100.0 and final["eval/rougeL"] == 100.0
  with open(os.path.join(workdir, "eval_predictions.jsonl"), encoding="utf-8") as f:
    predictions = [json.loads(line) for line in f]
  assert len(predictions) == 12
  assert predictions[0]["prediction"] == predictions[0]["reference"] == "HELLO"
  assert predictions[0]["where"].endswith("chats.jsonl: line 1: message 2")


def generate(*args):
  return subprocess.run([sys.executable, "-m", "lm.generate", *args],
                        cwd=REPO, capture_output=True, text=True, check=False, timeout=300)


def test_lm_generate_feeds_the_training_layout(chat_run, tmp_path):
  workdir, _ = chat_run
  config = checkpoints.load_config(workdir)
  model_config, params, tokenizer = checkpoints.load_for_inference(workdir)
  ids, mask = tokenizer.chat_template.encode(conversation("river")["messages"])
  prompt = registry.task_class("chat").generation_ids(config, tokenizer, "river")
  assert prompt == ids[:int(mask.argmax())].tolist()
  result = generate(f"--workdir={workdir}", "--prompt=river", "--prompt=jax", "--temperature=0",
                    "--max_new_tokens=8")
  assert result.returncode == 0, result.stderr
  assert "riverRIVER\n" in result.stdout and "jaxJAX\n" in result.stdout

  chats = tmp_path / "chats.jsonl"
  history = conversation("hello")["messages"] + [{"role": "user", "content": "flax"}]
  write_jsonl(chats, [{"messages": history}, {"prompt": "model"},
                      {"messages": [{"role": "system", "content": "be loud"},
                                    {"role": "user", "content": "jax"}]}])
  output = tmp_path / "replies.txt"
  result = generate(f"--workdir={workdir}", "--chat", f"--input={chats}", f"--output={output}",
                    "--temperature=0", "--max_new_tokens=8")
  assert result.returncode == 2 and "line 2: no 'messages' list" in result.stderr
  assert not output.exists()
  write_jsonl(chats, [{"messages": history}, {"prompt": "model", "response": ""},
                      {"messages": [{"role": "system", "content": "be loud"},
                                    {"role": "user", "content": "jax"}]}])
  result = generate(f"--workdir={workdir}", "--chat", f"--input={chats}", f"--output={output}",
                    "--temperature=0", "--max_new_tokens=8")
  assert result.returncode == 0, result.stderr
  assert output.read_text() == "FLAX\nMODEL\nJAX\n"


def test_stream_tokens_yields_the_greedy_tokens_one_by_one(chat_run):
  workdir, _ = chat_run
  model_config, params, tokenizer = checkpoints.load_for_inference(workdir)
  template, model = tokenizer.chat_template, make_model(model_config)
  prompt = template.prompt_ids(conversation("green")["messages"][:1])
  expected, = sampling.generate_tokens(model, params, [prompt], max_new_tokens=8,
                                       rng=jax.random.PRNGKey(0), temperature=0.0,
                                       eos_id=template.end_id)
  stream = sampling.stream_tokens(model, params, prompt, max_new_tokens=8,
                                  rng=jax.random.PRNGKey(0), temperature=0.0,
                                  eos_id=template.end_id)
  assert next(stream) == expected[0]  # The first token comes before the others are made.
  assert [expected[0], *stream] == expected and template.decode(expected) == "GREEN"


def test_session_keeps_the_history_and_drops_the_oldest_turns():
  tokenizer = tokenizers.CharTokenizer.train(["abcdefghij"])
  template = chat_template.RolesTemplate(tokenizer)
  session = chat_session.Session(template, budget=26, system="ab")
  assert session.prompt("cd") == (template.prompt_ids([
      {"role": "system", "content": "ab"}, {"role": "user", "content": "cd"}]), 0, False)
  session.add_reply("ef")
  ids, dropped, cut = session.prompt("gh")
  assert ids == template.prompt_ids([{"role": "system", "content": "ab"}, *session.history])
  assert (len(session.history), dropped, cut) == (3, 0, False)
  session.add_reply("ij")
  # [BOS] + 4 (system) + 4 x 4 (two exchanges) + 12 + [assistant] = 34 ids: one exchange goes.
  ids, dropped, _ = session.prompt("abcdefghij")
  assert dropped == 2 and [m["content"] for m in session.history] == ["gh", "ij", "abcdefghij"]
  assert len(ids) == 26
  session.reset()
  assert session.prompt("cd")[0] == template.prompt_ids([
      {"role": "system", "content": "ab"}, {"role": "user", "content": "cd"}])


class Terminal:
  """A command on a pseudo-terminal: what it prints, and typing into it."""

  def __init__(self, *args: str):
    master, slave = pty.openpty()
    self.process = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=REPO,
                                    close_fds=True)
    os.close(slave)
    self.master, self.output = master, ""

  def read_until(self, marker: str, timeout: float = 180) -> str:
    """The output up to and including `marker`, consumed; carriage returns dropped."""
    deadline = time.monotonic() + timeout
    while marker not in self.output:
      ready, _, _ = select.select([self.master], [], [], max(deadline - time.monotonic(), 0))
      if not ready:
        raise AssertionError(f"no {marker!r} within {timeout}s; got {self.output!r}")
      try:
        self.output += os.read(self.master, 4096).decode("utf-8", "replace").replace("\r", "")
      except OSError:  # The process ended.
        raise AssertionError(f"ended before {marker!r}; got {self.output!r}") from None
    end = self.output.index(marker) + len(marker)
    seen, self.output = self.output[:end], self.output[end:]
    return seen

  def type(self, line: str) -> str:
    """Types `line` and returns what comes back up to the next prompt (without the echo)."""
    os.write(self.master, (line + "\n").encode())
    return self.read_until("\n> ").removeprefix(line + "\n")[:-len("\n> ")]


def test_lm_chat_holds_a_conversation_in_a_terminal(chat_run):
  workdir, _ = chat_run
  terminal = Terminal(sys.executable, "-m", "lm.chat", f"--workdir={workdir}", "--temperature=0",
                      "--max_new_tokens=8")
  try:
    banner = terminal.read_until("> ")
    assert "context 48 tokens" in banner and "/reset" in banner
    assert terminal.type("hello") == "HELLO"
    assert terminal.type("river") == "RIVER"
    assert terminal.type("jax") == "JAX"  # The prompt now holds 3 turns: 31 of 40 tokens.
    reply = terminal.type("flax")
    assert "oldest messages were dropped" in reply and reply.endswith("FLAX")
    assert terminal.type("/reset") == "(conversation forgotten)"
    assert terminal.type("green") == "GREEN"
    assert terminal.type("/system be loud") == "(system message set)"
    reply = terminal.type("hello " * 20)  # Longer than the context: read from its end.
    assert "only its last tokens were read" in reply and "oldest messages were dropped" in reply
    assert terminal.type("/nope").startswith("(unknown command /nope")
    os.write(terminal.master, b"/quit\n")
    assert terminal.process.wait(timeout=60) == 0
  finally:
    terminal.process.kill()
    os.close(terminal.master)


@pytest.mark.parametrize("messages, error", [
    (conversation("hello")["messages"][:1], "the conversation ends with a user message"),
    ([{"role": "tool", "content": "42"}, *conversation("hello")["messages"]],
     "message 1 has role 'tool'; the chat template knows system, user, assistant"),
])
def test_bad_conversations_are_named_before_anything_is_written(tmp_path, messages, error):
  source = write_jsonl(tmp_path / "chats.jsonl", [conversation("hello"), {"messages": messages}])
  with pytest.raises(UserError, match=f"chats.jsonl: line 2: {error}"):
    trainer.train_and_evaluate(chat_config(source), str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_transcripts_without_the_played_speaker_are_skipped_and_counted(tmp_path):
  """SAMSum's training file holds an empty dialogue: skipped and counted, as a monologue."""
  rows = [{"dialogue": "Anna: hi\nHugo: hello"}, {"dialogue": ""},
          {"dialogue": "Anna: talking alone"}, {"dialogue": "Hugo: hey\nAnna: yes?"}]
  source = tmp_path / "dialogues.json"
  source.write_text(json.dumps(rows))
  config = chat_config(str(source))
  config.data.dialogue_field = "dialogue"
  train, valid, num_unplayed = chat.read_conversations(config)
  assert [c.messages[-1]["content"] for c in train] == ["hello", "yes?"]
  assert len(valid) == 2 and num_unplayed == 4  # The same file read as both splits.


def test_chat_from_a_pretrained_model_grows_its_vocabulary(tmp_path, data):
  pretrain = chat_config(data)
  pretrain.task.kind = "causal_lm"
  pretrain.data.update(source=os.path.join(REPO, "data", "tinyshakespeare", "input.txt"),
                       valid_source="")
  pretrained_dir = str(tmp_path / "pretrained")
  trainer.train_and_evaluate(pretrain, pretrained_dir)
  result = subprocess.run([sys.executable, "-m", "lm.chat", f"--workdir={pretrained_dir}"],
                          cwd=REPO, capture_output=True, text=True, check=False, timeout=300)
  assert result.returncode == 2 and "the tokenizer has no chat template" in result.stderr
  config = chat_config(data)
  config.init_from = pretrained_dir
  trainer.train_and_evaluate(config, str(tmp_path / "chat"))
  _, before, tokenizer = checkpoints.load_for_inference(pretrained_dir)
  _, after, chat_tokenizer = checkpoints.load_for_inference(str(tmp_path / "chat"))
  V = tokenizer.vocab_size
  assert chat_tokenizer.chat_template.vocab_size == V + 4
  embedding = after["token_embed"]["embedding"]
  assert embedding.shape[0] == V + 4 and np.isfinite(embedding).all()
  # Trained from the pretrained rows: still close to them after 4 steps, unlike fresh ones.
  assert np.abs(embedding[:V] - before["token_embed"]["embedding"]).max() < 0.05
  # LoRA freezes the embeddings but the role tokens' rows (config.finetune.train_new_tokens).
  role_rows = {}
  for train_new_tokens in (True, False):
    config.finetune.update(method="lora", lora_rank=4, train_new_tokens=train_new_tokens)
    lora_dir = str(tmp_path / f"lora_{train_new_tokens}")
    trainer.train_and_evaluate(config, lora_dir)
    tuned = checkpoints.load_for_inference(lora_dir)[1]["token_embed"]["embedding"]
    np.testing.assert_array_equal(tuned[:V], before["token_embed"]["embedding"])
    role_rows[train_new_tokens] = tuned[V:]
  assert (role_rows[True] != role_rows[False]).all()


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
  """(the transformers model, its directory, the workdir it was imported into)."""
  directory = tmp_path_factory.mktemp("qwen2")
  source = write_hf_chat_tokenizer(directory / "hf", "qwen2")
  vocab = len(transformers.AutoTokenizer.from_pretrained(source)) + 3  # Padded rows too.
  model = randomized(
      transformers.Qwen2ForCausalLM(
          transformers.Qwen2Config(vocab_size=vocab, hidden_size=48, num_hidden_layers=2,
                                   num_attention_heads=6, num_key_value_heads=2,
                                   intermediate_size=72, max_position_embeddings=128)))
  model.save_pretrained(source)
  import_hf(source, str(directory / "run"))
  return model, source, str(directory / "run")


def test_imported_qwen2_chat_template_generates_and_lora_fine_tunes(qwen2, tmp_path, data):
  model, source, workdir = qwen2
  _, params, tokenizer = checkpoints.load_for_inference(workdir)
  model_config = checkpoints.load_for_inference(workdir)[0]
  template = tokenizer.chat_template
  assert template.kind == "jinja"
  reference = transformers.AutoTokenizer.from_pretrained(source)
  messages = conversation("hello", "world")["messages"]
  theirs = reference.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
  assert template.encode(messages)[0].tolist() == list(theirs)
  prompt = template.prompt_ids(messages[:3])
  ours, = sampling.generate_tokens(make_model(model_config), params, [prompt], max_new_tokens=6,
                                   rng=jax.random.PRNGKey(0), temperature=0.0)
  with torch.no_grad():
    expected = model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False,
                              attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                              eos_token_id=None, pad_token_id=0)
  assert ours == expected[0, len(prompt):].tolist()

  config = chat_config(data, steps=4)
  config.update(init_from=workdir, init_architecture="adopt")
  config.finetune.update(method="lora", lora_rank=4)
  tuned = str(tmp_path / "tuned")
  final = trainer.train_and_evaluate(config, tuned)
  assert np.isfinite(final["eval/loss"])
  _, tuned_params, tuned_tokenizer = checkpoints.load_for_inference(tuned)
  assert tuned_tokenizer.chat_template.template == template.template
  assert np.abs(np.asarray(tuned_params["block_1"]["attn"]["query"]["lora_b"])).max() > 0
  result = generate(f"--workdir={tuned}", "--prompt=hello", "--max_new_tokens=4")
  assert result.returncode == 0, result.stderr
  exported = str(tmp_path / "exported")
  export_hf(tuned, exported)
  reloaded = transformers.AutoTokenizer.from_pretrained(exported)
  assert reloaded.apply_chat_template(messages, tokenize=True,
                                      return_dict=True)["input_ids"] == list(theirs)
