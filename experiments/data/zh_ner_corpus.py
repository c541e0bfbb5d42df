"""Writes the Chinese text of ../shared/data as plain-text files for masked-LM pretraining of
the Weibo NER encoder (experiments/weibo_ner.py:pretrain):

  cmrc2018_contexts.txt  the distinct paragraphs of CMRC 2018 train (1.2M characters)
  weibo_train.txt        the Weibo NER training messages, one a line (position digits dropped)
  fortunes.txt           Debian fortunes-zh (fortunes, Tang 300, Song 100), one entry a paragraph,
                         terminal color codes removed

Only training splits are read (the CMRC 2018 dev contexts and the Weibo dev/test messages are
never pretrained on).

  python experiments/data/zh_ner_corpus.py [OUT_DIR]     (default runs/zh_ner_corpus; ~2 s)
"""

import gzip
import json
import os
import re
import sys

DATA = "../shared/data"
OUT = "runs/zh_ner_corpus"
_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def cmrc_contexts(path: str) -> list[str]:
  with gzip.open(path, "rt", encoding="utf-8") as f:
    articles = json.load(f)["data"]
  seen = dict.fromkeys(p["context"].strip() for a in articles for p in a["paragraphs"])
  return [context for context in seen if context]


def weibo_messages(path: str) -> list[str]:
  messages, current = [], []
  with open(path, encoding="utf-8") as f:
    for line in f:
      columns = line.split()
      if not columns:
        if current:
          messages.append("".join(current))
        current = []
        continue
      token = columns[0]
      current.append(token[0] if token[1:].isdigit() else token)  # '口0' -> '口'.
  if current:
    messages.append("".join(current))
  return messages


def fortune_entries(paths: list[str]) -> list[str]:
  entries = []
  for path in paths:
    with open(path, encoding="utf-8") as f:
      text = _ESCAPE.sub("", f.read())
    entries += [e.strip() for e in re.split(r"^%$", text, flags=re.M) if e.strip()]
  return entries


def main(out: str) -> None:
  os.makedirs(out, exist_ok=True)
  fortunes = [f"{DATA}/zh-fortunes/{name}" for name in ("chinese", "tang300", "song100")]
  parts = {
      "cmrc2018_contexts.txt": "\n".join(cmrc_contexts(f"{DATA}/cmrc2018/cmrc2018_train.json.gz")),
      "weibo_train.txt": "\n".join(weibo_messages(f"{DATA}/weibo-ner/weiboNER_2nd_conll.train")),
      "fortunes.txt": "\n\n".join(fortune_entries(fortunes)),
  }
  for name, text in parts.items():
    with open(os.path.join(out, name), "w", encoding="utf-8") as f:
      f.write(text + "\n")
    print(f"{os.path.join(out, name)}: {len(text):,} characters")


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else OUT)
