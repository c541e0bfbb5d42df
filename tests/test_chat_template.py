"""Chat templates and conversations: the own template's layout and loss mask (assistant tokens
only), generation ids equal to the training ids up to each reply, imported Jinja templates equal
to transformers' apply_chat_template, dropping the oldest turns, transcripts, and bad input."""

import io
import json
import os

import numpy as np
import pytest
import sentencepiece
import transformers
from tokenizers.implementations import ByteLevelBPETokenizer

from lm.data import chat_template, conversations, hf_tokenizer, tokenizers
from lm.data.reader import Record
from lm.errors import UserError
from lm.tasks import registry
from tests.conftest import FIXTURES, REPO

CHAT = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello"},
    {"role": "assistant", "content": "HELLO"},
    {"role": "user", "content": " world\n"},
    {"role": "assistant", "content": "WORLD!"},
]
# Qwen2-Instruct's template, and Llama 3's (which starts with bos_token).
QWEN2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
         "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
         "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
         "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
          "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content']"
          " | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content"
          " %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
          "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
SPECIALS = {
    "qwen2": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
              {"chat_template": QWEN2, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
               "bos_token": None}),
    "llama3": (["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                "<|end_header_id|>", "<|eot_id|>"],
               {"chat_template": LLAMA3, "bos_token": "<|begin_of_text|>",
                "eos_token": "<|end_of_text|>"}),
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def write_hf_chat_tokenizer(directory, family: str = "qwen2") -> str:
  """A byte-level BPE tokenizer.json (as Qwen2's and Llama 3's) trained on Shakespeare, with the
  family's special tokens and chat template in tokenizer_config.json."""
  specials, config = SPECIALS[family]
  with open(REPO / "data" / "tinyshakespeare" / "input.txt", encoding="utf-8") as f:
    lines = f.read().splitlines()[:400]
  bpe = ByteLevelBPETokenizer()
  bpe.train_from_iterator(lines, vocab_size=400, min_frequency=2, special_tokens=specials,
                          show_progress=False)
  os.makedirs(directory, exist_ok=True)
  bpe.save(os.path.join(directory, "tokenizer.json"))
  with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
    json.dump({**config, "tokenizer_class": "PreTrainedTokenizerFast"}, f)
  return str(directory)


@pytest.fixture(scope="module")
def own():
  tokenizer = tokenizers.CharTokenizer.train(["hello world HELLO WORLD! be brief\n"])
  return chat_template.RolesTemplate(tokenizer)


def test_own_template_layout_and_loss_on_assistant_tokens_only(own):
  tokenizer, V = own.tokenizer, own.tokenizer.vocab_size
  system, user, assistant, end = range(V, V + 4)
  ids, mask = own.encode(CHAT)
  enc = tokenizer.encode
  expected = [tokenizer.special_ids.bos, system, *enc("be brief"), end, user, *enc("hello"), end,
              assistant, *enc("HELLO"), end, user, *enc(" world\n"), end, assistant,
              *enc("WORLD!"), end]
  assert ids.tolist() == expected and own.vocab_size == V + 4 and own.end_id == end
  # Exactly the assistants' contents and the <|end|> closing each of their turns.
  trained = ids[mask].tolist()
  assert trained == [*enc("HELLO"), end, *enc("WORLD!"), end]
  assert own.decode(ids[mask]) == "HELLOWORLD!"


@pytest.mark.parametrize("family", ["own", "qwen2", "llama3"])
def test_generation_ids_are_the_training_ids_up_to_each_reply(family, own, tmp_path):
  template = own if family == "own" else _imported(tmp_path, family)
  ids, mask = template.encode(CHAT)
  replies = np.flatnonzero(mask & ~np.roll(mask, 1))  # Where each assistant turn starts.
  assert len(replies) == 2
  for start, k in zip(replies, (2, 4)):
    assert template.prompt_ids(CHAT[:k]) == ids[:start].tolist()
  one_turn = template.encode([{"role": "user", "content": "hello"},
                              {"role": "assistant", "content": "HELLO"}])
  task = registry.task_class("chat")
  template.tokenizer.chat_template = template
  prompt = task.generation_ids({}, template.tokenizer, "hello")
  assert prompt == one_turn[0][:int(one_turn[1].argmax())].tolist()


def _imported(tmp_path, family: str) -> chat_template.ChatTemplate:
  source = write_hf_chat_tokenizer(tmp_path / family, family)
  tokenizer = hf_tokenizer.import_tokenizer(source)
  saved = str(tmp_path / f"{family}_saved")
  tokenizer.save(saved)
  assert chat_template.import_hf(source, tokenizer, saved)
  return tokenizers.load_tokenizer(saved).chat_template


@pytest.mark.parametrize("family", ["qwen2", "llama3"])
def test_imported_jinja_template_ids_equal_transformers(family, tmp_path):
  template = _imported(tmp_path, family)
  reference = transformers.AutoTokenizer.from_pretrained(str(tmp_path / family))
  theirs = lambda messages, **kwargs: list(
      reference.apply_chat_template(messages, tokenize=True, return_dict=True,
                                    **kwargs)["input_ids"])
  for messages in (CHAT, CHAT[1:], CHAT[1:3]):
    assert template.encode(messages)[0].tolist() == theirs(messages)
    assert template.prompt_ids(messages[:-1]) == theirs(messages[:-1], add_generation_prompt=True)
    assert template.render(messages) == reference.apply_chat_template(messages, tokenize=False)
  end = {"qwen2": "<|im_end|>", "llama3": "<|eot_id|>"}[family]
  assert template.end_id == reference.convert_tokens_to_ids(end)
  ids, mask = template.encode(CHAT[1:3])
  assert reference.decode(ids[mask]).startswith("HELLO" + end)  # Reply, end of turn (and "\n").


def test_a_sentencepiece_model_alone_imports_no_chat_template(tmp_path, capsys):
  """Its template text would not tokenize as transformers' converted tokenizer does (`<s>` in
  the text, line breaks): the template is left out with a note, never imported wrongly."""
  with open(REPO / "data" / "tinyshakespeare" / "input.txt", encoding="utf-8") as f:
    lines = [line for line in f.read().splitlines()[:1000] if line.strip()]
  model = io.BytesIO()
  sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model,
                                           vocab_size=400, model_type="bpe", byte_fallback=True,
                                           minloglevel=2)
  source = tmp_path / "llama"
  source.mkdir()
  (source / "tokenizer.model").write_bytes(model.getvalue())
  llama2 = ("{% for message in messages %}{% if message['role'] == 'user' %}{{ bos_token + "
            "'[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ ' ' + message['content']"
            " + ' ' + eos_token }}{% endif %}{% endfor %}")
  (source / "tokenizer_config.json").write_text(json.dumps(
      {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
       "chat_template": llama2}))
  tokenizer = hf_tokenizer.import_tokenizer(str(source))
  assert tokenizer.name == "hf_sentencepiece"
  saved = str(tmp_path / "saved")
  tokenizer.save(saved)
  assert not chat_template.import_hf(str(source), tokenizer, saved)
  assert "its chat template is not imported" in capsys.readouterr().err
  assert tokenizers.load_tokenizer(saved).chat_template is None
  # Why: transformers keeps <s> one token and the line break a byte; the model alone does not.
  reference = transformers.AutoTokenizer.from_pretrained(str(source))
  text = "<s>[INST] be\nbrief [/INST]"
  assert reference.encode(text, add_special_tokens=False) != tokenizer.encode(text)


def test_fit_prompt_drops_the_oldest_messages_but_keeps_the_system_one(own):
  long_chat = CHAT + [{"role": "user", "content": "hello world"}]
  full = own.prompt_ids(long_chat)
  assert chat_template.fit_prompt(own, long_chat, len(full)) == (full, 0, False)
  ids, dropped, cut = chat_template.fit_prompt(own, long_chat, len(full) - 1)
  kept = [CHAT[0], *long_chat[3:]]  # The user-assistant exchange went; user first again.
  assert (ids, dropped, cut) == (own.prompt_ids(kept), 2, False)
  ids, dropped, cut = chat_template.fit_prompt(own, long_chat, 5)
  assert (len(ids), dropped, cut) == (5, 4, True) and ids == full[-5:]


def test_transcripts_become_conversations_of_the_second_speaker():
  with open(FIXTURES / "samsum" / "val.json", encoding="utf-8") as f:
    dialogue = json.load(f)[1]["dialogue"]  # Hugo and Anna, \r\n line ends.
  chat = conversations.from_dialogue(dialogue + "\r\nHugo: Bye!\r\n", "val.json: item 2")
  assert chat.messages[0] == {"role": "system", "content": "You are Anna, chatting with Hugo."}
  assert chat.messages[1:3] == [{"role": "user", "content": "Hugo: Hi Anna, do you have time "
                                                            "tonight?"},
                                {"role": "assistant", "content": "I think so. Why?"}]
  assert chat.messages[-1] == {"role": "assistant", "content": "Sure, no problem :)"}
  assert [m["role"] for m in chat.messages[1:]] == ["user", "assistant"] * 3
  merged = conversations.from_dialogue("A: hi\nA: there\ncontinued\nB: yo", "x")
  assert merged.messages[1] == {"role": "user", "content": "A: hi\nA: there\ncontinued"}
  assert conversations.from_dialogue("A: talking alone\nA: still", "x") is None


def test_records_pairs_and_bad_input_are_named(own):
  fields = {"messages": "messages", "prompt": "prompt", "response": "response"}
  pair = Record({}, "pairs.jsonl: line 3", {"prompt": "hello", "response": "HELLO"})
  chat = conversations.from_record(pair, fields, "strict")
  assert [m["role"] for m in chat.messages] == ["user", "assistant"]
  ends_with_user = Record({}, "chats.jsonl: line 2", {"messages": CHAT[:2]})
  with pytest.raises(UserError, match=r"chats.jsonl: line 2: the conversation ends with a user "
                                      r"message; a training conversation ends with the assistant"):
    conversations.check_trainable(conversations.from_record(ends_with_user, fields, "strict"))
  tool = Record({}, "chats.jsonl: line 5", {"messages": [{"role": "tool", "content": "42"}]})
  with pytest.raises(UserError, match=r"chats.jsonl: line 5: message 1 has role 'tool'; the chat "
                                      r"template knows system, user, assistant"):
    conversations.from_record(tool, fields, "strict")
  for messages, problem in (("hi", "non-empty list"), ([], "non-empty list"),
                            ([{"role": "user"}], "no text \"content\"")):
    with pytest.raises(UserError, match=f"chats.jsonl: line 7: .*{problem}"):
      conversations.from_record(Record({}, "chats.jsonl: line 7", {"messages": messages}), fields,
                                "strict")
  with pytest.raises(UserError, match=r"line 9: no 'messages' list .*nor 'prompt' and 'response'"):
    conversations.from_record(Record({}, "chats.jsonl: line 9", {"text": "hi"}), fields, "strict")
  with pytest.raises(UserError, match="message 1 has role 'bot'"):
    own.prompt_ids([{"role": "bot", "content": "hi"}])


def test_saved_template_loads_with_its_tokenizer_and_old_directories_have_none(own, tmp_path):
  own.tokenizer.save(tmp_path)
  assert tokenizers.load_tokenizer(tmp_path).chat_template is None  # As every existing run.
  assert chat_template.prepare(tokenizers.load_tokenizer(tmp_path), str(tmp_path)).end_id == (
      own.end_id)
  loaded = tokenizers.load_tokenizer(tmp_path).chat_template
  assert loaded.encode(CHAT)[0].tolist() == own.encode(CHAT)[0].tolist()
  (tmp_path / chat_template.FILE).write_text("{\"kind\": \"roles\"}")
  with pytest.raises(UserError, match="chat_template.json: corrupt chat template"):
    tokenizers.load_tokenizer(tmp_path)
