"""Samples text from a trained model.

  python -m lm.generate --workdir=DIR --prompt="ROMEO:" --prompt="JULIET:" \
      --max_new_tokens=200 --temperature=0.8 --top_k=0 --top_p=1.0 --seed=0
  python -m lm.generate --workdir=DIR --prompt="ROMEO:" --beam_size=4 --length_penalty=0.6

  python -m lm.generate --workdir=DIR --input=prompts.jsonl --output=generations.txt \
      --text_field=prompt --temperature=0 [--batch_size=32]
  python -m lm.generate --workdir=CHAT_RUN --chat --input=conversations.jsonl --output=replies.txt

Several `--prompt`s are decoded together in one batch (see `lm.sampling`); without `--prompt`
the model starts from a newline. `--beam_size` > 1 returns the best beam of a beam search
(`lm.beam_search`) instead of a sample. `lm.sampling.generate_text` is the same thing as a
function.

`--chat` (with `--input` and `--output`) reads conversations instead, one a record as training
reads them (a `messages` list of {role, content}, or a prompt/response pair), and writes the
assistant's reply to each, one a line, built with the run's chat template exactly as training
built its conversations (`lm.chat` holds one interactively). A conversation that ends with an
assistant message (a validation file's reference reply, a pair's response) is answered from
the messages before it.

`--input` reads prompts from a file, as `lm.predict` reads texts: plain text (every line is one
prompt, blank or not), or .json (a list of objects), .jsonl, .csv or .tsv with the prompt in
`--text_field`. `--output` then gets one generation per input prompt, in input order, one a line:
the continuation alone, a newline inside it written as the two characters `\n`. The file is
written whole at the end (nothing on an error).
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
_SAMPLING = cli.define_sampling_flags()  # max_new_tokens, temperature, top_k, top_p, seed.
_INPUT = flags.DEFINE_string(
    "input", None, "A file of prompts (plain text: one a line; .json list, .jsonl, .csv or .tsv: "
    "the prompt in --text_field), instead of --prompt. Needs --output.")
_OUTPUT = flags.DEFINE_string(
    "output", None, "With --input: where the generations go, one a line in input order (the "
    "continuation alone; a newline inside it written as \\n).")
_TEXT_FIELD = flags.DEFINE_string("text_field", "text",
                                  "--input: the key or column holding the prompt.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "--input: prompts generated together.")
_BEAM_SIZE = flags.DEFINE_integer(
    "beam_size", 1, "1: sample (or greedy with --temperature=0); N > 1: the best of a beam "
    "search with N beams (deterministic; temperature, top_k, top_p and seed are not used).")
_LENGTH_PENALTY = flags.DEFINE_float(
    "length_penalty", 0.6, "Beam search: alpha of the GNMT length penalty ((5 + length) / 6) ** "
    "alpha that beam scores are divided by; 0: raw log-probabilities (favours short outputs).")
_CHAT = flags.DEFINE_bool(
    "chat", False, "--input holds conversations (a list of {role, content} messages per record, "
    "under the key 'messages' or --text_field): --output gets the assistant's reply to each, "
    "through the run's chat template.")


def _run(argv: list[str]) -> None:
  if len(argv) > 1:
    raise UserError(f"unexpected arguments {' '.join(argv[1:])!r}; pass text with --prompt")
  if not _WORKDIR.value:
    raise UserError("--workdir is required (the training run directory)")
  if _INPUT.value and _PROMPT.value:
    raise UserError("--input and --prompt are alternatives: give prompts in a file or as flags")
  if bool(_INPUT.value) != bool(_OUTPUT.value):
    raise UserError("--input and --output go together: the generations of --input's prompts are "
                    "written to --output")
  if _BATCH_SIZE.value < 1:
    raise UserError(f"--batch_size must be >= 1, got {_BATCH_SIZE.value}")
  if _CHAT.value:
    logging.set_verbosity(logging.WARNING)
    _chat_replies()
    return
  prompts = _PROMPT.value or ["\n"]
  for i, prompt in enumerate(prompts):
    if not prompt:
      raise UserError(f"--prompt number {i + 1} is empty; leave --prompt out to start from a"
                      " newline")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every restore step at INFO.
  # Imported here so that this module loads without the training stack.
  from lm import sampling  # pylint: disable=g-import-not-at-top
  from lm.tasks import registry  # pylint: disable=g-import-not-at-top
  from lm.training.checkpoints import load_config, load_for_inference  # pylint: disable=g-import-not-at-top
  config = load_config(_WORKDIR.value)
  if config is None:
    raise UserError(f"--workdir={_WORKDIR.value}: no config.json; is this a training run "
                    "directory?")
  task = registry.task_class(config["task"]["kind"])
  records = _read_prompts(_INPUT.value) if _INPUT.value else []
  model_config, params, tokenizer = load_for_inference(_WORKDIR.value)
  prompts = [record.values["text"] for record in records] or prompts
  ids = [task.generation_ids(config, tokenizer, prompt) for prompt in prompts]
  if records:  # Checked before generating anything, so that a bad prompt names its line.
    sampling.check_prompts(ids, model_config, names=[f"{r.where}: the prompt" for r in records])
  options = _options(config, task)
  batch = _BATCH_SIZE.value if _INPUT.value else len(prompts)
  continuations = []
  for start in range(0, len(prompts), batch):
    continuations += task.generate(config, model_config, params, tokenizer,
                                   prompts[start:start + batch], **options)
  samples = ([prompt + c for prompt, c in zip(prompts, continuations)]
             if task.continues_prompt else continuations)
  longest = max(map(len, ids)) + options["max_new_tokens"]
  if task.continues_prompt and longest > model_config.max_len:
    print(f"note: prompt and new tokens reached {longest} tokens, past the model's context "
          f"(config.model.max_len={model_config.max_len}): from there on, each token was "
          f"predicted from the last {model_config.max_len} tokens only (a sliding window)",
          file=sys.stderr)
  if _INPUT.value:
    _write_generations(_OUTPUT.value, continuations)
    print(f"Wrote {len(continuations):,} generations to {_OUTPUT.value}")
    return
  for i, sample in enumerate(samples):
    print(f"--- prompt {i + 1} ---")
    print(sample)


def _options(config: dict, task) -> dict:
  """The decoding options of the flags; a seq2seq run's own (config.task: beam_size,
  length_penalty, max_new_tokens; greedy) stand for the flags not given."""
  options = {name: holder.value for name, holder in _SAMPLING.items()}
  options.update(beam_size=_BEAM_SIZE.value, length_penalty=_LENGTH_PENALTY.value)
  if task.continues_prompt:
    return options
  task_cfg = config["task"]
  given = lambda flag: flags.FLAGS[flag].present
  defaults = dict(beam_size=task_cfg["beam_size"],
                  length_penalty=task_cfg["length_penalty"],
                  max_new_tokens=task_cfg["max_new_tokens"] or config["model"]["max_len"],
                  temperature=0.0)
  options.update({name: value for name, value in defaults.items() if not given(name)})
  return options


def _chat_replies() -> None:
  """--chat: the reply to every conversation of --input, batched as --input's prompts; a
  conversation too long for the context, less --max_new_tokens, loses its oldest messages."""
  if not _INPUT.value:
    raise UserError("--chat reads conversations from --input and writes the replies to --output")
  import jax  # pylint: disable=g-import-not-at-top
  from lm import sampling  # pylint: disable=g-import-not-at-top
  from lm.data import chat_template, conversations, reader  # pylint: disable=g-import-not-at-top
  from lm.models.architecture import make_model  # pylint: disable=g-import-not-at-top
  from lm.training.checkpoints import load_for_inference  # pylint: disable=g-import-not-at-top
  field = _TEXT_FIELD.value if flags.FLAGS["text_field"].present else "messages"
  records = reader.read_records(_INPUT.value, fields={}, keep_columns=True, config_key="--input")
  fields = {"messages": field, "prompt": "prompt", "response": "response"}
  chats = [conversations.from_record(r, fields, "strict") for r in records]
  model_config, params, tokenizer = load_for_inference(_WORKDIR.value)
  template = chat_template.of(tokenizer, f"--workdir={_WORKDIR.value}")
  options = {name: holder.value for name, holder in _SAMPLING.items()}
  budget = model_config.max_len - options["max_new_tokens"]
  if budget < 1:
    raise UserError(f"--max_new_tokens={options['max_new_tokens']} leaves no room for a prompt "
                    f"in the model's context of {model_config.max_len} tokens")
  # A final assistant message (a reference reply, or a pair's response) is what is predicted.
  histories = [c.messages[:-1] if c.messages[-1]["role"] == "assistant" else c.messages
               for c in chats]
  fitted = [chat_template.fit_prompt(template, history, budget, c.where)
            for history, c in zip(histories, chats)]
  shortened = sum(1 for _, dropped, cut in fitted if dropped or cut)
  if shortened:
    print(f"note: {shortened:,} conversations were longer than the context less --max_new_tokens"
          f" ({budget} tokens): their oldest messages were dropped", file=sys.stderr)
  model, rng = make_model(model_config), jax.random.PRNGKey(options.pop("seed"))
  prompts, replies, batch = [ids for ids, _, _ in fitted], [], _BATCH_SIZE.value
  for start in range(0, len(prompts), batch):
    tokens = sampling.generate_tokens(model, params, prompts[start:start + batch], rng=rng,
                                      eos_id=template.end_id, **options)
    replies += [template.decode(t) for t in tokens]
  _write_generations(_OUTPUT.value, replies)
  print(f"Wrote {len(replies):,} replies to {_OUTPUT.value}")


def _read_prompts(path: str) -> list:
  """The records of --input's prompts, in order (every line of a plain text file, blank or
  not)."""
  from lm.data import reader, setting_names  # pylint: disable=g-import-not-at-top
  with setting_names.named(text_field="--text_field"):
    records = reader.read_records(path,
                                  fields={"text": _TEXT_FIELD.value},
                                  required=("text",),
                                  config_key="--input",
                                  blank="keep")
  return records


def _write_generations(path: str, generations: list[str]) -> None:
  """One generation a line, newlines inside escaped as \\n; written atomically."""
  from lm.data import atomic  # pylint: disable=g-import-not-at-top
  lines = [g.replace("\r\n", "\n").replace("\n", "\\n") for g in generations]
  atomic.atomic_write_text(path, "".join(line + "\n" for line in lines))


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
