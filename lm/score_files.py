"""`lm.score`'s files: the JSONL items it reads and the scores it writes (the command, which
defines flags, is lm/score.py; its docstring gives the formats)."""

import json

from lm import scoring
from lm.data import atomic, text_files
from lm.errors import UserError
from lm.training import checkpoints


def read_items(path: str) -> list[dict]:
  """The items of a JSONL file (module docstring); a missing or wrong field is a UserError
  naming the file and line."""
  items = []
  for number, line in text_files.decoded_lines(path, "strict"):
    if not line.strip():
      continue
    where = f"{path}: line {number}"
    item = text_files.parse_json_line(line, where)
    context, candidates = item.get("context"), item.get("candidates")
    if not isinstance(context, str):
      raise UserError(f"{where}: 'context' must be a string, got "
                      f"{'nothing' if context is None else type(context).__name__}")
    if (not isinstance(candidates, list) or not candidates or
        not all(isinstance(c, str) for c in candidates)):
      raise UserError(f"{where}: 'candidates' must be a non-empty list of strings")
    label = item.get("label")
    if label is not None and not _label_index(label, candidates):
      raise UserError(f"{where}: 'label' {label!r} is neither one of the candidates nor an "
                      f"index of one (0 to {len(candidates) - 1})")
    items.append({**item, "where": where})
  if not items:
    raise UserError(f"{path}: no items (one JSON object a line)")
  return items


def _label_index(label, candidates: list[str]) -> list[int]:
  """[the index of the candidate `label` names] (a text or an index), or []."""
  if isinstance(label, int) and not isinstance(label, bool):
    return [label] if 0 <= label < len(candidates) else []
  return [candidates.index(label)] if label in candidates else []


def score_file(workdir: str, input_path: str, output_path: str, *, checkpoint: str = "latest",
               batch_size: int = 32, share_prefix: bool = True,
               best_by: str = "sum") -> dict[str, float]:
  """Writes the scores of `input_path`'s items to `output_path`; returns counts (items,
  truncated) and, where items have labels, the accuracy of `best`."""
  if batch_size < 1:
    raise UserError(f"--batch_size={batch_size}: must be >= 1")
  config = checkpoints.load_config(workdir)
  if config is None:
    raise UserError(f"--workdir={workdir}: no config.json; is this a training run directory?")
  items = read_items(input_path)  # Before the checkpoint: a bad file fails at once.
  model_config, params, tokenizer = checkpoints.load_for_inference(workdir, checkpoint)
  scorer = scoring.Scorer(config, model_config, tokenizer)
  scores = scorer.score(params, [(item["context"], item["candidates"]) for item in items],
                        batch_size=batch_size, share_prefix=share_prefix,
                        names=[item["where"] for item in items])
  key = (lambda s: s.logprob_sum) if best_by == "sum" else (lambda s: s.logprob_mean)
  lines, correct, labeled = [], 0, 0
  for item, item_scores in zip(items, scores):
    best = max(range(len(item_scores)), key=lambda j: key(item_scores[j]))
    out = {name: item[name] for name in ("id", "label") if name in item}
    out["candidates"] = [{
        "text": text,
        "logprob_sum": s.logprob_sum,
        "logprob_mean": s.logprob_mean,
        "tokens": s.tokens
    } for text, s in zip(item["candidates"], item_scores)]
    out["best"] = item["candidates"][best]
    out["context_truncated"] = item_scores[0].truncated
    lines.append(json.dumps(out, ensure_ascii=False) + "\n")
    if "label" in item:
      labeled += 1
      correct += _label_index(item["label"], item["candidates"]) == [best]
  atomic.atomic_write_text(output_path, "".join(lines))
  summary = {"items": len(items), "truncated": sum(s[0].truncated for s in scores)}
  if labeled:
    summary.update(labeled=labeled, accuracy=correct / labeled)
  return summary
