"""Conversations for chat fine-tuning, from the records of any source the reader reads.

A record holds one of (checked in this order):
  messages   a list of {"role", "content"} objects (key config.data.messages_field), roles
             system / user / assistant, any number of turns (.jsonl, or a .json list)
  a pair     `prompt` and `response` (config.data.prompt_field / response_field): the
             one-turn conversation [user: prompt, assistant: response], as `sft` reads pairs
  dialogue   with config.data.dialogue_field: a transcript of 'Name: utterance' lines
             (SAMSum's `dialogue`); the model plays the second speaker (`from_dialogue`)
A training conversation ends with an assistant message, the reply the model learns; one that
does not is an error naming its file and line (a transcript in which the played speaker never
talks, or an empty one, is skipped and counted instead).
"""

import dataclasses
import re
from typing import Callable

from lm.data import chat_template, text_files
from lm.data.reader import Record
from lm.errors import UserError

# 'Name: utterance' (the name: up to 40 characters without a colon or a line break).
_SPEAKER_RE = re.compile(r"^\s*([^:\n]{1,40}?)\s*:\s?(.*)$")


@dataclasses.dataclass(frozen=True)
class Conversation:
  messages: list[dict[str, str]]
  where: str  # File and line, for error messages.


def from_record(record: Record, fields: dict[str, str], encoding_errors: str) -> Conversation:
  """The conversation of a record read with keep_columns=True; `fields` maps 'messages',
  'prompt' and 'response' to their keys."""
  columns = record.columns
  if fields["messages"] in columns:
    messages = chat_template.check_messages(columns[fields["messages"]], record.where)
    for message in messages:  # Unpaired surrogate escapes: an error, or U+FFFD.
      message["content"] = text_files.check_text(message["content"], encoding_errors,
                                                 where=record.where)
    return Conversation(messages, record.where)
  if fields["prompt"] in columns and fields["response"] in columns:
    prompt, response = columns[fields["prompt"]], columns[fields["response"]]
    if not isinstance(prompt, str) or not isinstance(response, str):
      raise UserError(f"{record.where}: the prompt and the response must be strings")
    return Conversation([{"role": "user", "content": prompt},
                         {"role": "assistant", "content": response}], record.where)
  raise UserError(f"{record.where}: no {fields['messages']!r} list of messages (config.data."
                  f"messages_field), nor {fields['prompt']!r} and {fields['response']!r} "
                  f"(config.data.prompt_field, response_field)")


def from_dialogue(text: str, where: str) -> Conversation | None:
  """A transcript ('Name: utterance' lines; a line without a name continues the last one) as
  a conversation in which the model (assistant) plays the second speaker to talk: a system
  message names it and the others, the others' lines are user messages with their names,
  consecutive lines of one side are one message, and it ends at the played speaker's last
  line. None if that speaker never talks."""
  lines = []
  for line in text.splitlines():
    match = _SPEAKER_RE.match(line)
    if match:
      lines.append([match.group(1), match.group(2).strip()])
    elif line.strip() and lines:
      lines[-1][1] += "\n" + line.strip()
  speakers = list(dict.fromkeys(name for name, _ in lines))
  if len(speakers) < 2:
    return None
  played = speakers[1]
  others = ", ".join(name for name in speakers if name != played)
  messages = [{"role": "system", "content": f"You are {played}, chatting with {others}."}]
  for name, utterance in lines:
    role = "assistant" if name == played else "user"
    content = utterance if role == "assistant" else f"{name}: {utterance}"
    if messages[-1]["role"] == role:
      messages[-1]["content"] += "\n" + content
    else:
      messages.append({"role": role, "content": content})
  while messages[-1]["role"] != "assistant":
    messages.pop()
  return Conversation(messages, where)


def check_trainable(conversation: Conversation) -> None:
  """A training conversation must end with the assistant's reply."""
  last = conversation.messages[-1]["role"]
  if last != "assistant":
    raise UserError(f"{conversation.where}: the conversation ends with a {last} message; a "
                    f"training conversation ends with the assistant's reply (what the model "
                    f"learns to say)")


def map_contents(conversation: Conversation, fn: Callable[[str], str]) -> Conversation:
  """The conversation with `fn` applied to every message's content (cleaning, lowercasing)."""
  return dataclasses.replace(conversation, messages=[{**m, "content": fn(m["content"])}
                                                     for m in conversation.messages])

