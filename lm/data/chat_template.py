"""Chat templates: a conversation (messages with roles) -> the token ids a decoder reads, and
which of them it learns to predict.

A template is saved as `chat_template.json` in the tokenizer directory it belongs to (a
workdir's `tokenizer/`, copied along with it by `config.init_from`); `tokenizers.load_tokenizer`
attaches it to the tokenizer as `tokenizer.chat_template`. Two kinds:

  roles  this project's own. Four role tokens follow the tokenizer's vocabulary (ids V .. V+3:
         <|system|> <|user|> <|assistant|> <|end|>), so that existing tokenizers, their ids and
         the checkpoints trained on them stay as they are; the model's vocabulary is V + 4:
           [BOS] <|system|> be brief <|end|> <|user|> hi <|end|> <|assistant|> hello! <|end|> ...
         The generation prompt is <|assistant|>; a reply ends at <|end|>.
  jinja  an imported model's `chat_template` (its tokenizer_config.json, or chat_template.jinja),
         rendered as transformers renders it (a sandboxed Jinja environment with its filters and
         globals, the tokenizer's special tokens as variables such as `bos_token`), then
         tokenized with special tokens recognized in the text and none added. A reply ends at
         the first special token the template writes after an assistant message (Qwen2's
         <|im_end|>, Llama 3's <|eot_id|>), else at the tokenizer's EOS.

Training and generation share one encoding (`ChatTemplate.encode`): a conversation is cut at
its message boundaries and every piece is encoded on its own, so the ids fed for a prompt
(`prompt_ids`: the messages so far and the generation prompt) are exactly the training ids of
a conversation that continues it, up to the reply. The loss mask holds an assistant message's
content and the tokens that close its turn (<|end|>; <|im_end|> and its newline), nothing else.
"""

import abc
import functools
import json
import os
import sys
from typing import Any, Sequence

import numpy as np

from lm.data import atomic
from lm.data.tokenizer_base import Tokenizer
from lm.errors import UserError

FILE = "chat_template.json"
ROLES = ("system", "user", "assistant")
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
# Files of a Hugging Face model directory that may hold its chat template (the first wins).
HF_TEMPLATE_FILE = "chat_template.jinja"
HF_CONFIG_FILE = "tokenizer_config.json"
# The special-token variables transformers passes to a template (its `special_tokens_map`).
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                      "cls_token", "mask_token")

Messages = Sequence[dict[str, str]]


def check_messages(messages: Any, where: str) -> list[dict[str, str]]:
  """`messages` as a list of {"role", "content"} dicts, roles among ROLES; UserError naming
  `where` (file and line) and the message otherwise."""
  if not isinstance(messages, list) or not messages:
    raise UserError(f"{where}: the messages must be a non-empty list of {{\"role\", \"content\"}} "
                    f"objects, got {type(messages).__name__ if messages else 'none'}")
  checked = []
  for number, message in enumerate(messages, start=1):
    if not isinstance(message, dict):
      raise UserError(f"{where}: message {number} is a {type(message).__name__}, not an object "
                      f"with \"role\" and \"content\"")
    role, content = message.get("role"), message.get("content")
    if role not in ROLES:
      raise UserError(f"{where}: message {number} has role {role!r}; the chat template knows "
                      f"{', '.join(ROLES)}")
    if not isinstance(content, str):
      raise UserError(f"{where}: message {number} ({role}) has no text \"content\" (got "
                      f"{type(content).__name__})")
    checked.append({"role": role, "content": content})
  return checked


class ChatTemplate(abc.ABC):
  """Encodes conversations for one tokenizer (see the module doc)."""

  kind: str
  tokenizer: Tokenizer
  end_id: int  # The token that ends an assistant turn: generation stops there.

  @property
  def vocab_size(self) -> int:
    """The model's vocabulary: the tokenizer's, and the template's own tokens after it."""
    return self.tokenizer.vocab_size

  @abc.abstractmethod
  def _segments(self, messages: list[dict[str, str]], add_generation_prompt: bool,
                where: str) -> list[tuple[list[int], bool]]:
    """The conversation's pieces in order: (ids, whether the model learns to predict them)."""

  @abc.abstractmethod
  def _content(self) -> dict[str, Any]:
    """What `chat_template.json` holds besides the kind."""

  def encode(self, messages: Messages, *, add_generation_prompt: bool = False,
             where: str = "a conversation") -> tuple[np.ndarray, np.ndarray]:
    """ids int32 [L] and loss mask bool [L] of a conversation (`where` names it in errors)."""
    ids, mask = [], []
    for piece, trained in self._segments(check_messages(list(messages), where),
                                         add_generation_prompt, where):
      ids += piece
      mask += [trained] * len(piece)
    return np.array(ids, np.int32), np.array(mask, bool)

  def prompt_ids(self, messages: Messages, where: str = "a conversation") -> list[int]:
    """The ids that generation feeds to continue `messages` with the assistant's reply."""
    return self.encode(messages, add_generation_prompt=True, where=where)[0].tolist()

  def decode(self, ids) -> str:
    """The text of generated ids (special tokens and the template's own tokens dropped)."""
    return self.tokenizer.decode(i for i in map(int, ids) if i < self.tokenizer.vocab_size)

  def save(self, directory: str) -> None:
    atomic.atomic_write_text(os.path.join(directory, FILE),
                             json.dumps({"kind": self.kind, **self._content()}, indent=2,
                                        ensure_ascii=False))


class RolesTemplate(ChatTemplate):
  """This project's own template: role tokens after the tokenizer's vocabulary."""

  kind = "roles"

  def __init__(self, tokenizer: Tokenizer, first_id: int | None = None):
    self.tokenizer = tokenizer
    self.first_id = tokenizer.vocab_size if first_id is None else first_id
    self.role_ids = dict(zip(ROLES, range(self.first_id, self.first_id + len(ROLES))))
    self.end_id = self.first_id + len(ROLES)

  @property
  def vocab_size(self) -> int:
    return self.first_id + len(ROLE_TOKENS)

  def _segments(self, messages, add_generation_prompt, where):
    del where
    segments = [([self.tokenizer.special_ids.bos], False)]
    for message in messages:
      assistant = message["role"] == "assistant"
      segments.append(([self.role_ids[message["role"]]], False))
      segments.append(([*self.tokenizer.encode(message["content"]), self.end_id], assistant))
    if add_generation_prompt:
      segments.append(([self.role_ids["assistant"]], False))
    return segments

  def _content(self):
    return {"first_id": self.first_id, "tokens": list(ROLE_TOKENS)}


class JinjaTemplate(ChatTemplate):
  """An imported model's Jinja chat template, rendered as transformers renders it.

  Message k's piece is the text that rendering messages[:k + 1] adds to rendering messages[:k];
  an assistant message's piece is split after the generation prompt (what rendering messages[:k]
  with add_generation_prompt=True adds), the rest is trained. Templates whose renderings do not
  grow this way (one that changes earlier text when a message is added) are refused.
  """

  kind = "jinja"

  def __init__(self, tokenizer: Tokenizer, template: str, special_tokens: dict[str, str]):
    self.tokenizer = tokenizer
    self.template = template
    self.special_tokens = dict(special_tokens)
    self._compiled = _compile(template)
    self.end_id = self._find_end_id()

  def render(self, messages: Messages, add_generation_prompt: bool = False,
             where: str = "a conversation") -> str:
    """The template's text of `messages` (transformers' `apply_chat_template(tokenize=False)`)."""
    import jinja2  # pylint: disable=g-import-not-at-top
    try:
      return self._compiled.render(messages=list(messages), tools=None, documents=None,
                                   add_generation_prompt=add_generation_prompt,
                                   **self.special_tokens)
    except jinja2.TemplateError as e:
      raise UserError(f"{where}: the chat template refuses the conversation ({e})") from None

  def _segments(self, messages, add_generation_prompt, where):
    segments, done = [], ""
    for k, message in enumerate(messages):
      if message["role"] == "assistant":
        prompt = self._grown(done, self.render(messages[:k], True, where) if k else "", where)
        segments.append((self.tokenizer.encode(prompt[len(done):]), False))
        done = prompt
      text = self._grown(done, self.render(messages[:k + 1], where=where), where)
      segments.append((self.tokenizer.encode(text[len(done):]), message["role"] == "assistant"))
      done = text
    if add_generation_prompt:
      text = self._grown(done, self.render(messages, True, where), where)
      segments.append((self.tokenizer.encode(text[len(done):]), False))
    return segments

  @staticmethod
  def _grown(before: str, after: str, where: str) -> str:
    if not after.startswith(before):
      raise UserError(f"{where}: the chat template rewrites earlier text when a message is added"
                      f" (its rendering of the first messages is not the start of the whole "
                      f"conversation's), so replies cannot be trained turn by turn")
    return after

  def _find_end_id(self) -> int:
    """The first special token written after an assistant message, else the tokenizer's EOS."""
    probe = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    where = f"{FILE} (probing where a reply ends)"
    before = self.render(probe[:1], True, where) + "Hello"
    after = self.render(probe, where=where)
    tail = after[len(before):] if after.startswith(before) else ""
    special_V = self.tokenizer.special_mask()
    return next((i for i in self.tokenizer.encode(tail) if special_V[i]),
                self.tokenizer.special_ids.eos)

  def _content(self):
    return {"template": self.template, "special_tokens": self.special_tokens}


@functools.lru_cache(maxsize=8)
def _compile(template: str):
  """The template compiled in transformers' environment (`chat_template_utils`): sandboxed,
  trim_blocks and lstrip_blocks, loop controls, its `tojson`, `raise_exception` and
  `strftime_now`; `{% generation %}` blocks render their body."""
  import datetime  # pylint: disable=g-import-not-at-top
  import jinja2  # pylint: disable=g-import-not-at-top
  from jinja2 import ext, nodes, sandbox  # pylint: disable=g-import-not-at-top

  class Generation(ext.Extension):
    tags = {"generation"}

    def parse(self, parser):
      lineno = next(parser.stream).lineno
      body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
      return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
      return caller()

  def raise_exception(message):
    raise jinja2.TemplateError(message)

  def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)

  environment = sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                      extensions=[Generation, ext.loopcontrols])
  environment.filters["tojson"] = tojson
  environment.globals["raise_exception"] = raise_exception
  environment.globals["strftime_now"] = lambda f: datetime.datetime.now().strftime(f)
  try:
    return environment.from_string(template)
  except jinja2.TemplateSyntaxError as e:
    raise UserError(f"the chat template does not parse (line {e.lineno}: {e.message})") from None


def load(directory: str, tokenizer: Tokenizer) -> ChatTemplate | None:
  """The template saved in tokenizer `directory`, or None where it has none."""
  path = os.path.join(directory, FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      saved = json.load(f)
    if saved["kind"] == RolesTemplate.kind:
      return RolesTemplate(tokenizer, int(saved["first_id"]))
    if saved["kind"] == JinjaTemplate.kind:
      return JinjaTemplate(tokenizer, saved["template"], saved["special_tokens"])
  except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
    raise UserError(f"{path}: corrupt chat template ({e!r})") from None
  raise UserError(f"{path}: unknown chat template kind {saved['kind']!r}")


def prepare(tokenizer: Tokenizer, directory: str) -> ChatTemplate:
  """The tokenizer's template, or a new own (roles) one saved into tokenizer `directory`."""
  if tokenizer.chat_template is None:
    tokenizer.chat_template = RolesTemplate(tokenizer)
    tokenizer.chat_template.save(directory)
  return tokenizer.chat_template


def of(tokenizer: Tokenizer, where: str) -> ChatTemplate:
  """`tokenizer.chat_template`; a UserError naming `where` (a workdir) if it has none."""
  if tokenizer.chat_template is None:
    raise UserError(f"{where}: the tokenizer has no chat template ({FILE}); chat with a run "
                    f"trained with config.task.kind='chat', or an imported model whose "
                    f"tokenizer_config.json has a chat_template")
  return tokenizer.chat_template


def import_hf(src_dir: str, tokenizer: Tokenizer, directory: str) -> bool:
  """Saves the chat template of Hugging Face model directory `src_dir` (chat_template.jinja,
  else tokenizer_config.json's `chat_template`: a string, or a list of named templates of which
  'default' is taken) into tokenizer `directory`; False if it has none, or (with a note) if
  the tokenizer is a SentencePiece model alone, which would tokenize the template's text
  otherwise than transformers does (measured: `<s>` as characters, line breaks as spaces)."""
  path = os.path.join(src_dir, HF_TEMPLATE_FILE)
  config = _read_json(os.path.join(src_dir, HF_CONFIG_FILE))
  if os.path.isfile(path):
    with open(path, encoding="utf-8") as f:
      template = f.read()
  else:
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, {"name": ...}]
      named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
      template = named.get("default")
  if not isinstance(template, str) or not template.strip():
    return False
  if tokenizer.name == "hf_sentencepiece":
    print(f"note: {src_dir}: its chat template is not imported: with a SentencePiece model alone "
          f"(no tokenizer.json) the template's text would not tokenize as in transformers "
          f"(special tokens such as <s> written in it, line breaks); add the model's "
          f"tokenizer.json to import it", file=sys.stderr)
    return False
  special = {key: _token_text(config[key]) for key in SPECIAL_TOKEN_KEYS if config.get(key)}
  JinjaTemplate(tokenizer, template, special).save(directory)
  return True


def _read_json(path: str) -> dict:
  if not os.path.isfile(path):
    return {}
  try:
    with open(path, encoding="utf-8") as f:
      values = json.load(f)
  except (ValueError, RecursionError) as e:
    raise UserError(f"{path}: corrupt JSON ({e})") from None
  return values if isinstance(values, dict) else {}


def _token_text(token: Any) -> str:
  """A special token of tokenizer_config.json: a string, or an AddedToken dict's content."""
  return token.get("content", "") if isinstance(token, dict) else str(token)


def fit_prompt(template: ChatTemplate, messages: Messages, budget: int,
               where: str = "a conversation") -> tuple[list[int], int, bool]:
  """The prompt ids of `messages` within `budget` tokens: the oldest messages after the leading
  system ones are dropped until it fits and the rest starts with a user message (templates may
  require that); a last message alone too long keeps its last `budget` ids.

  Returns (ids, how many messages were dropped, whether the ids were cut).
  """
  messages = list(messages)
  system = 0
  while system < len(messages) - 1 and messages[system]["role"] == "system":
    system += 1
  rest = messages[system:]
  dropped = 0
  while True:
    ids = template.prompt_ids(messages[:system] + rest, where)
    if len(ids) <= budget or len(rest) <= 1:
      break
    rest = rest[1:]
    dropped += 1
    while len(rest) > 1 and rest[0]["role"] != "user":
      rest, dropped = rest[1:], dropped + 1
  if len(ids) > budget:
    return ids[len(ids) - budget:], dropped, True
  return ids, dropped, False
