"""Samples text from a trained model.

  python -m lm.generate --workdir=DIR --prompt="ROMEO:" --prompt="JULIET:" \
      --max_new_tokens=200 --temperature=0.8 --top_k=0 --top_p=1.0 --seed=0

Several `--prompt`s are decoded together in one batch (see `lm.sampling`); without `--prompt`
the model starts from a newline. `lm.sampling.generate_text` is the same thing as a function.
"""

from lm import runtime

if __name__ == "__main__":  # Ctrl-C while importing: one line, not a traceback.
  runtime.exit_on_ctrl_c()

# As in lm.main, so that a checkpoint restores onto the device layout it was trained on.
runtime.use_one_cpu_device_per_core()  # Before JAX is imported.
runtime.use_default_compilation_cache()

import sys  # pylint: disable=g-import-not-at-top,g-bad-import-order

from absl import flags, logging  # pylint: disable=g-import-not-at-top

from lm import cli  # pylint: disable=g-import-not-at-top
from lm.errors import UserError  # pylint: disable=g-import-not-at-top

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory with a checkpoint.")
_PROMPT = flags.DEFINE_multi_string(
    "prompt", None, "Text to continue; repeat for a batch. "
    "Default: a single newline.")
_MAX_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 200, "Tokens generated per prompt.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.8, "Softmax temperature; 0 is greedy.")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens; 0: all.")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus sampling mass; 1: all tokens.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed of the sampler.")


def _run(argv: list[str]) -> None:
  if len(argv) > 1:
    raise UserError(f"unexpected arguments {' '.join(argv[1:])!r}; pass text with --prompt")
  if not _WORKDIR.value:
    raise UserError("--workdir is required (the training run directory)")
  prompts = _PROMPT.value or ["\n"]
  for i, prompt in enumerate(prompts):
    if not prompt:
      raise UserError(f"--prompt number {i + 1} is empty; leave --prompt out to start from a"
                      " newline")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every restore step at INFO.
  # Imported here so that this module loads without the training stack.
  from lm.sampling import generate_text  # pylint: disable=g-import-not-at-top
  from lm.tasks import registry  # pylint: disable=g-import-not-at-top
  from lm.training.checkpoints import load_config, load_for_inference  # pylint: disable=g-import-not-at-top
  config = load_config(_WORKDIR.value)
  if config is None:
    raise UserError(f"--workdir={_WORKDIR.value}: no config.json; is this a training run "
                    "directory?")
  task = registry.task_class(config["task"]["kind"])
  model_config, params, tokenizer = load_for_inference(_WORKDIR.value)
  encode = lambda prompt: task.generation_ids(config, tokenizer, prompt)
  samples = generate_text(model_config,
                          params,
                          tokenizer,
                          prompts,
                          max_new_tokens=_MAX_NEW_TOKENS.value,
                          temperature=_TEMPERATURE.value,
                          top_k=_TOP_K.value,
                          top_p=_TOP_P.value,
                          seed=_SEED.value,
                          encode=encode)
  longest = max(len(encode(p)) for p in prompts) + _MAX_NEW_TOKENS.value
  if longest > model_config.max_len:
    print(f"note: prompt and new tokens reached {longest} tokens, past the model's context "
          f"(config.model.max_len={model_config.max_len}): from there on, each token was "
          f"predicted from the last {model_config.max_len} tokens only (a sliding window)",
          file=sys.stderr)
  for i, sample in enumerate(samples):
    print(f"--- prompt {i + 1} ---")
    print(sample)


def main(argv: list[str]) -> None:
  try:
    _run(argv)
  except UserError as e:
    cli.fail(str(e))


def run() -> None:
  """The console command (pyproject.toml [project.scripts])."""
  cli.run(main)


if __name__ == "__main__":
  run()
