"""The state of an interactive chat (`lm.chat`): the conversation that still fits the context,
and the streamed printing of a reply. Kept apart from the command, which defines flags."""

from typing import Iterable

from lm.data import chat_template


class Session:
  """The conversation of a chat: its system message and the messages that still fit."""

  def __init__(self, template: chat_template.ChatTemplate, budget: int, system: str = ""):
    self.template, self.budget, self.system = template, budget, system
    self.history: list[dict[str, str]] = []

  def reset(self) -> None:
    self.history = []

  def prompt(self, text: str) -> tuple[list[int], int, bool]:
    """The prompt ids after the user's `text`; (ids, how many of the oldest messages were
    dropped, whether the ids had to be cut): `chat_template.fit_prompt`."""
    self.history.append({"role": "user", "content": text})
    system = [{"role": "system", "content": self.system}] if self.system else []
    ids, dropped, cut = chat_template.fit_prompt(self.template, system + self.history,
                                                 self.budget)
    self.history = self.history[dropped:]
    return ids, dropped, cut

  def add_reply(self, text: str) -> None:
    self.history.append({"role": "assistant", "content": text})


def print_streamed(template: chat_template.ChatTemplate, tokens: Iterable[int]) -> str:
  """Prints the text of `tokens` as they come (a character whose UTF-8 bytes are not all there
  yet waits for them); returns the whole text."""
  ids, shown = [], ""
  for token in tokens:
    ids.append(token)
    text = template.decode(ids)
    if not text.endswith("\ufffd") and text.startswith(shown):
      print(text[len(shown):], end="", flush=True)
      shown = text
  text = template.decode(ids)
  print(text[len(shown):] if text.startswith(shown) else "", flush=True)
  return text
