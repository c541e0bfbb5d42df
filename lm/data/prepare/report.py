"""report.md, length_histogram.png and token_frequency.png of a prepare workdir."""

import os
from typing import Any

import numpy as np

from lm.data import atomic
from lm.data.prepare import quality
from lm.data.prepare.stats import LENGTH_BINS

LENGTH_PLOT = "length_histogram.png"
FREQUENCY_PLOT = "token_frequency.png"
_TOP_TOKENS = 20


def write_report(workdir: str, config: Any, result: dict, duplicates: dict,
                 token_counts: np.ndarray, tokenizer: Any) -> None:
  stats = result["stats"]
  _length_plot(os.path.join(workdir, LENGTH_PLOT), stats["lengths_in"], stats["lengths_out"])
  _frequency_plot(os.path.join(workdir, FREQUENCY_PLOT), token_counts)
  text = "\n".join(_markdown(config, result, duplicates, token_counts, tokenizer)) + "\n"
  atomic.atomic_write_text(os.path.join(workdir, "report.md"), text)


def _markdown(config, result, duplicates, token_counts, tokenizer) -> list[str]:
  counts, timings = result["stats"]["counts"], result["timings"]
  removed = result["stats"]["removed"]
  mb_in = counts.get("bytes_in", 0) / 1e6
  clean_seconds = counts.get("clean_seconds", 0.0)
  lines = [
      "# Corpus preparation report", "",
      f"Inputs: `{config.inputs}`" + (f"; evaluation: `{config.valid_inputs}`"
                                      if config.valid_inputs else
                                      f"; {config.valid_fraction:g} held out for validation"),
      f"Shards: {counts.get('num_shards', 1)}, worker processes: {counts.get('processes', 1)}.",
      "", "## Documents, bytes and tokens", "",
      "| | documents | bytes | tokens |", "|---|---:|---:|---:|",
      f"| read | {counts.get('documents_in', 0):,} | {counts.get('bytes_in', 0):,} | |",
      f"| after cleaning and quality filters | {counts.get('documents_clean', 0):,} |"
      f" {counts.get('bytes_clean', 0):,} | |",
  ]
  for split in ("train", "valid"):
    lines.append(f"| written: {split} | {counts.get(f'{split}_documents', 0):,} |"
                 f" {counts.get(f'{split}_bytes', 0):,} | {counts.get(f'{split}_tokens', 0):,} |")
  if counts.get("augmented_documents"):
    lines.append(f"\n{counts['augmented_documents']:,} of the training documents are augmented"
                 " copies (config.augment).")
  lines += ["", "## Removed documents, by rule", "", "| rule | documents |", "|---|---:|"]
  lines += [f"| {rule} | {n:,} |" for rule, n in sorted(removed.items(), key=lambda i: -i[1])]
  if not removed:
    lines.append("| (none) | 0 |")
  lines += ["", "## Cleaning steps", "",
            "| step | items removed or changed | documents changed |", "|---|---:|---:|"]
  items, documents = result["stats"]["cleaning_items"], result["stats"]["cleaning_documents"]
  lines += [f"| {step} | {items.get(step, 0):,} | {documents.get(step, 0):,} |"
            for step in config_steps(config)]
  lines += ["", f"Terminal escape sequences: {counts.get('escapes_in', 0):,} in the input,"
            f" {counts.get('train_escapes_out', 0) + counts.get('valid_escapes_out', 0):,} in"
            " the written text."]
  lines += _duplicate_lines(duplicates)
  lines += _token_lines(counts, token_counts, tokenizer)
  scripts = result["stats"]["scripts"]
  total_chars = sum(scripts.values()) or 1
  lines += ["", "## Characters by script (written text)", "", "| class | share |", "|---|---:|"]
  lines += [f"| {name} | {scripts.get(name, 0) / total_chars:.2%} |" for name in quality.SCRIPTS
            if scripts.get(name)]
  lines += ["", "## Lengths", "", f"![document lengths]({LENGTH_PLOT})",
            f"![token frequencies]({FREQUENCY_PLOT})", "", "## Time", "",
            "| stage | wall seconds |", "|---|---:|"]
  lines += [f"| {stage} | {seconds:.1f} |" for stage, seconds in timings.items()]
  if clean_seconds:
    lines.append(f"\nRead + clean + filter + signatures: {mb_in / clean_seconds:.2f} MB/s per"
                 f" process ({mb_in:.1f} MB in {clean_seconds:.1f} process-seconds).")
  return lines


def config_steps(config: Any) -> list[str]:
  from lm.data.prepare import config as prepare_config  # pylint: disable=g-import-not-at-top
  return list(prepare_config.cleaner_from(config.clean).enabled_steps)


def _duplicate_lines(duplicates: dict) -> list[str]:
  removed = duplicates["removed"]
  lines = ["", "## Duplicates", ""]
  for kind, name in (("exact", "Exact"), ("near", "Near (MinHash + LSH)")):
    lines.append(f"{name}: {removed.get(f'{kind}_duplicate', 0):,} documents removed in"
                 f" {duplicates[f'{kind}_clusters']:,} clusters (cluster size: count"
                 f" {duplicates[f'{kind}_cluster_sizes']}).")
  lines.append(f"Training documents duplicating an evaluation document:"
               f" {removed.get('duplicate_of_valid', 0):,} removed.")
  for kind in ("exact", "near"):
    for number, cluster in enumerate(duplicates["examples"][kind], start=1):
      lines += ["", f"### Example {kind} cluster {number}", ""]
      for member in cluster:
        snippet = " ".join(member["text"].split()).replace("|", "\\|")
        lines.append(f"- *{member['where']}*: {snippet}")
  if "contamination_markdown" in duplicates:
    lines += ["", "## Train/eval contamination", "", duplicates["contamination_markdown"]]
  return lines


def _token_lines(counts: dict, token_counts: np.ndarray, tokenizer: Any) -> list[str]:
  lines = ["", "## Tokens", "",
           f"Tokenizer: {tokenizer.name}, vocabulary {tokenizer.vocab_size:,}."]
  for split in ("train", "valid"):
    tokens = counts.get(f"{split}_tokens", 0)
    docs = counts.get(f"{split}_documents", 0)
    if not docs:
      continue
    lines.append(f"- {split}: {counts.get(f'{split}_bytes', 0) / max(tokens, 1):.2f} bytes per"
                 f" token, unk rate {counts.get(f'{split}_unk_tokens', 0) / max(tokens, 1):.4%},"
                 f" decode(encode(text)) != text for {counts.get(f'{split}_roundtrip_failures', 0)}"
                 f" of {docs:,} documents.")
  top = np.argsort(-token_counts, kind="stable")[:_TOP_TOKENS]
  pieces = []
  for token in top:
    if token_counts[token]:
      piece = ("EOS" if token == tokenizer.special_ids.eos else
               tokenizer.decode([int(token)]) or f"<id {int(token)}>")
      pieces.append(f"`{piece!r}` {int(token_counts[token]):,}")
  lines.append(f"\nMost frequent tokens (EOS included): {', '.join(pieces)}.")
  return lines


def _length_plot(path: str, lengths_in: list[int], lengths_out: list[int]) -> None:
  edges = 2.0**np.arange(LENGTH_BINS + 1)
  figure, axes = _figure()
  axes.stairs(lengths_in, edges, label="read", fill=False)
  axes.stairs(lengths_out, edges, label="written (cleaned, deduplicated)", fill=False)
  axes.set_xscale("log", base=2)
  used = np.flatnonzero(np.asarray(lengths_in) + np.asarray(lengths_out))
  if len(used):
    axes.set_xlim(edges[used[0]], edges[used[-1] + 1])
  axes.set_xlabel("document length (characters)")
  axes.set_ylabel("documents")
  axes.legend()
  _save(figure, path)


def _frequency_plot(path: str, token_counts: np.ndarray) -> None:
  frequencies = np.sort(token_counts[token_counts > 0])[::-1]
  figure, axes = _figure()
  axes.loglog(np.arange(1, len(frequencies) + 1), frequencies)
  axes.set_xlabel("token rank")
  axes.set_ylabel("occurrences")
  axes.set_title("Token frequency by rank")
  _save(figure, path)


def _figure():
  """A figure on the Agg canvas (files only, no display) and its axes."""
  # Imported here: matplotlib takes ~1 s to import, and only the last stage draws.
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=(7, 4))
  FigureCanvasAgg(figure)
  return figure, figure.add_subplot()


def _save(figure, path: str) -> None:
  figure.tight_layout()
  with atomic.atomic_writer(path) as f:
    figure.savefig(f, format="png", dpi=100)
