"""Chat fine-tuning: a decoder learns the assistant's turns of conversations, read through the
chat template saved with the run's tokenizer (lm/data/chat_template.py: this project's own
role tokens, or an imported model's Jinja template), the loss on assistant tokens only.

Data (lm/data/conversations.py): JSONL / JSON records with a `messages` list of {role, content}
(system / user / assistant, any number of turns, ending with the assistant's), `sft`'s
prompt/response pairs as one-turn conversations, or dialogue transcripts in which the model
plays one speaker (config.data.dialogue_field). A conversation longer than the context keeps
its first config.model.max_len + 1 tokens (counted); one left with no assistant token is
skipped (counted).

Generation applies exactly the training layout: `lm.generate --prompt=TEXT` feeds the one-turn
conversation [user: TEXT] with the template's generation prompt (`generation_ids`), `lm.chat`
and `lm.generate --chat` whole conversations, and a reply ends at the template's end of turn.
Evaluation (config.task.eval_generation) replies to every assistant turn of the validation
conversations after the turns before it; a history too long for the context, less room for
config.task.max_new_tokens (a quarter of the context when 0), loses its oldest messages.
"""

import os
from typing import Any

from lm.data import chat_template, conversations, pipeline, tokenizers
from lm.errors import UserError
from lm.tasks import base, sft, supervised


class ChatTask(sft.SftTask):
  """Causal LM on conversations through the run's chat template, predicting only the assistant
  messages and the tokens that end their turns; validation loss over those tokens."""

  data_roles = ("messages",)

  @classmethod
  def add_config_keys(cls, config) -> None:
    # Chat: the key of a record's list of {"role", "content"} messages (roles system, user,
    # assistant). A record without it may hold a prompt_field / response_field pair instead,
    # read as the one-turn conversation [user: prompt, assistant: response].
    config.data.messages_field = "messages"
    # Chat: the key / column of a dialogue transcript ('Name: utterance' lines, as SAMSum's
    # 'dialogue'), read as a conversation in which the model plays the second speaker;
    # '' reads messages_field.
    config.data.dialogue_field = ""

  @classmethod
  def head_fields(cls, config: dict, workdir: str) -> dict[str, Any]:
    """The vocabulary of the model: the tokenizer's and its chat template's own tokens."""
    tokenizer = tokenizers.load_tokenizer(os.path.join(workdir, pipeline.TOKENIZER_DIR))
    return {"vocab_size": chat_template.of(tokenizer, workdir).vocab_size}

  @classmethod
  def generation_ids(cls, config: dict, tokenizer: Any, prompt: str) -> list[int]:
    """The one-turn conversation [user: prompt] and the template's generation prompt."""
    del config
    template = chat_template.of(tokenizer, "this run")
    return template.prompt_ids([{"role": "user", "content": prompt}])

  @classmethod
  def generate(cls, config: dict, model_config: Any, params: Any, tokenizer: Any,
               prompts: list[str], **options: Any) -> list[str]:
    """`lm.generate --prompt`: the reply to each prompt, ending at the template's end of
    turn."""
    end_id = chat_template.of(tokenizer, "this run").end_id
    return super().generate(config, model_config, params, tokenizer, prompts, eos_id=end_id,
                            **options)

  # pylint: disable-next=super-init-not-called  # Reads conversations, not pairs.
  def __init__(self, config: Any, workdir: str, task_fields: dict[str, Any]):
    self.config = config
    train, valid, self.num_unplayed = read_conversations(config)
    tokenizer = base.prepare_tokenizer(
        config, workdir, lambda: [m["content"] for c in train for m in c.messages])
    directory = os.path.join(workdir, pipeline.TOKENIZER_DIR)
    self.template = chat_template.prepare(tokenizer, directory)
    self._set_model(tokenizer, self.template.vocab_size, task_fields)
    self.stop_id = self.template.end_id
    self.num_cut, self.num_empty = 0, 0
    self.train, self.valid = self._examples(train), self._examples(valid)
    self.eval_prompts = self._eval_prompts(valid, config.train.eval_examples)

  def _examples(self, chats: list[conversations.Conversation]) -> list:
    """(ids, loss mask) per conversation, at most seq_len + 1 tokens."""
    examples = []
    for chat in chats:
      ids, mask = self.template.encode(chat.messages, where=chat.where)
      if len(ids) - 1 > self.seq_len:
        ids, mask = ids[:self.seq_len + 1], mask[:self.seq_len + 1]
        self.num_cut += 1
      if mask[1:].any():
        examples.append((ids, mask))
      else:
        self.num_empty += 1
    return examples

  def _eval_prompts(self, chats: list[conversations.Conversation],
                    limit: int) -> list[sft.EvalPrompt]:
    """A prompt per assistant turn (the first `limit`, 0 = all): the turns before it, as many
    of the latest as fit the context less room for the reply."""
    room = self.config.task.max_new_tokens or self.seq_len // 4
    budget = max(self.seq_len - room, 1)
    prompts = []
    for chat in chats:
      for k, message in enumerate(chat.messages):
        if limit and len(prompts) == limit:
          return prompts
        if message["role"] == "assistant":
          ids, _, _ = chat_template.fit_prompt(self.template, chat.messages[:k], budget,
                                               chat.where)
          prompts.append(sft.EvalPrompt(ids, message["content"],
                                        f"{chat.where}: message {k + 1}"))
    return prompts

  def decode(self, ids) -> str:
    return self.template.decode(ids)

  def describe(self) -> str:
    trained = sum(int(mask[1:].sum()) for _, mask in self.train)
    return (f"Data: {len(self.train):,} training conversations ({trained:,} assistant tokens), "
            f"{len(self.valid):,} validation; chat template {self.template.kind!r}; "
            f"{self.num_cut:,} cut to {self.seq_len + 1} tokens, {self.num_empty:,} left without "
            f"an assistant token and {self.num_unplayed:,} transcripts without the played "
            f"speaker skipped; padded to buckets {', '.join(map(str, self.buckets))}")


def read_conversations(config: Any) -> tuple[list, list, int]:
  """Training and validation conversations of config.data (`supervised.read_splits`), cleaned
  and lowercased as it says; and how many transcripts (empty ones too) had no line of the
  played speaker."""
  data = config.data
  if data.dialogue_field:  # Cleaned and lowercased as read, as every text value is; an empty
    # transcript (SAMSum train has one) has no played speaker: skipped and counted.
    train, valid = supervised.read_splits(config, {"dialogue": data.dialogue_field},
                                          blank="keep")
    convert = lambda r: conversations.from_dialogue(r.values["dialogue"], r.where)
  else:
    train, valid = supervised.read_splits(config, {}, keep_columns=True)
    fields = {"messages": data.messages_field, "prompt": data.prompt_field,
              "response": data.response_field}
    as_trained = _text_as_trained(data.clean, data.lowercase)
    convert = lambda r: conversations.map_contents(
        conversations.from_record(r, fields, data.encoding_errors), as_trained)
  splits = [[c for c in map(convert, records) if c is not None] for records in (train, valid)]
  for chat in splits[0] + splits[1]:
    conversations.check_trainable(chat)
  if not splits[0] or not splits[1]:
    raise UserError(f"config.data.source: no {'training' if not splits[0] else 'validation'} "
                    f"conversations with a line of the played speaker in {data.source!r}")
  return splits[0], splits[1], len(train) + len(valid) - len(splits[0]) - len(splits[1])


def _text_as_trained(clean: str, lower: bool):
  """config.data.clean's steps, then lower-casing with config.data.lowercase, as one function
  of a text (`supervised.as_trained` does this to records' text values)."""
  cleaner = supervised.cleaner_from(clean) if clean.strip() else None
  cleaned = (lambda text: cleaner.clean(text)[0]) if cleaner else (lambda text: text)
  return (lambda text: cleaned(text).lower()) if lower else cleaned
