"""Import and export Hugging Face checkpoints.

  python -m lm.convert --from_hf=SRC_DIR --workdir=DST    # GPT-2, BERT/MiniLM, Llama/Mistral/
                                                           # Qwen2, GPT-NeoX (sequential residual)
  python -m lm.convert --workdir=SRC --to_hf=DST_DIR [--checkpoint=latest|best|STEP]

The imported workdir is a finished run: fine-tune it with --config.init_from=DST, continue
pretraining the same way, or sample with `python -m lm.generate --workdir=DST`. Export writes a
new directory (DST_DIR must not exist, or be empty): config.json, model.safetensors,
generation_config.json and the tokenizer files (LoRA adapters merged); a pooled encoder
classifier as a sentence-transformers model.
"""

from lm import runtime

if __name__ == "__main__":  # Ctrl-C while importing: one line, not a traceback.
  runtime.exit_on_ctrl_c()

from absl import flags, logging

from lm import cli
from lm.errors import UserError

_FROM_HF = flags.DEFINE_string("from_hf", None, "Hugging Face model directory to import.")
_TO_HF = flags.DEFINE_string("to_hf", None, "Directory to export the workdir's model into.")
_WORKDIR = flags.DEFINE_string("workdir", None, "This project's workdir (import target or export "
                               "source).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "Export: 'latest', 'best' or a step.")


def main(argv: list[str]) -> None:
  from lm.convert import exporter, importer  # pylint: disable=g-import-not-at-top
  try:
    if len(argv) > 1:
      raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _WORKDIR.value or bool(_FROM_HF.value) == bool(_TO_HF.value):
      raise UserError("give --workdir and exactly one of --from_hf (import) or --to_hf (export)")
    logging.set_verbosity(logging.WARNING)
    if _FROM_HF.value:
      cfg = importer.import_hf(_FROM_HF.value, _WORKDIR.value)
      message = (f"Imported {_FROM_HF.value} into {_WORKDIR.value}: {cfg.num_layers} layers, "
                 f"width {cfg.embed_dim}, vocabulary {cfg.vocab_size}")
    else:
      architecture = exporter.export_hf(_WORKDIR.value, _TO_HF.value, _CHECKPOINT.value)
      message = f"Exported {_WORKDIR.value} into {_TO_HF.value} as {architecture}"
  except UserError as e:
    cli.fail(str(e))
  print(message)


def run() -> None:
  """The console command (pyproject.toml [project.scripts])."""
  cli.run(main)


if __name__ == "__main__":
  run()
