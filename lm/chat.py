"""An interactive terminal chat with a chat model: a run trained with config.task.kind='chat',
or an imported model whose tokenizer_config.json has a chat template.

  python -m lm.chat --workdir=DIR [--system="You are Amanda."] [--temperature=0.8 --top_k=0 \
      --top_p=1.0 --max_new_tokens=200 --seed=0]

Type a message; the reply is printed token by token as it is generated (`sampling.stream_tokens`)
and ends at the template's end of turn. The prompt of every reply is the conversation so far,
built with the run's chat template exactly as training built its conversations. When it no
longer fits the model's context less --max_new_tokens, its oldest messages are dropped (the
system message stays) and a notice says so; a single message longer than that keeps its end.
Commands: /reset forgets the conversation, /system TEXT sets the system message (/system alone
removes it), /quit or Ctrl-D ends.
"""

from lm import runtime

if __name__ == "__main__":  # Ctrl-C while importing: one line, not a traceback.
  runtime.exit_on_ctrl_c()

runtime.use_one_cpu_device_per_core()  # Before JAX is imported (as lm.generate).
runtime.use_default_compilation_cache()

import itertools  # pylint: disable=g-import-not-at-top,g-bad-import-order

from absl import flags  # pylint: disable=g-import-not-at-top

from lm import cli  # pylint: disable=g-import-not-at-top
from lm.chat_session import Session, print_streamed  # pylint: disable=g-import-not-at-top
from lm.data import chat_template  # pylint: disable=g-import-not-at-top
from lm.errors import UserError  # pylint: disable=g-import-not-at-top

_WORKDIR = flags.DEFINE_string("workdir", None, "A chat run's directory (or an imported model's).")
_SYSTEM = flags.DEFINE_string("system", "", "The system message the conversation starts with.")
_SAMPLING = cli.define_sampling_flags()  # max_new_tokens, temperature, top_k, top_p, seed.

COMMANDS = "/reset forgets the conversation, /system TEXT sets the system message, /quit ends"


def _run(argv: list[str]) -> None:
  if len(argv) > 1:
    raise UserError(f"unexpected arguments {' '.join(argv[1:])!r}")
  if not _WORKDIR.value:
    raise UserError("--workdir is required (a chat run's directory)")
  import jax  # pylint: disable=g-import-not-at-top
  from lm import sampling  # pylint: disable=g-import-not-at-top
  from lm.models.architecture import make_model  # pylint: disable=g-import-not-at-top
  from lm.training.checkpoints import load_for_inference  # pylint: disable=g-import-not-at-top
  options = {name: holder.value for name, holder in _SAMPLING.items()}
  model_config, params, tokenizer = load_for_inference(_WORKDIR.value)
  template = chat_template.of(tokenizer, f"--workdir={_WORKDIR.value}")
  if not model_config.causal:
    raise UserError(f"--workdir={_WORKDIR.value}: its model is an encoder; chat needs a decoder")
  budget = model_config.max_len - options["max_new_tokens"]
  if budget < 1:
    raise UserError(f"--max_new_tokens={options['max_new_tokens']} leaves no room for the "
                    f"conversation in the model's context of {model_config.max_len} tokens")
  model, rng = make_model(model_config), jax.random.PRNGKey(options.pop("seed"))
  session = Session(template, budget, _SYSTEM.value)
  print(f"Chat with {_WORKDIR.value} (context {model_config.max_len} tokens). {COMMANDS}.",
        flush=True)
  for turn in itertools.count():
    try:
      line = input("> ").strip()
    except EOFError:
      print()
      return
    command, _, rest = line.partition(" ")
    if not line:
      continue
    if command == "/quit":
      return
    if command == "/reset":
      session.reset()
      print("(conversation forgotten)", flush=True)
      continue
    if command == "/system":
      session.system = rest.strip()
      print(f"(system message {'set' if session.system else 'removed'})", flush=True)
      continue
    if command.startswith("/"):
      print(f"(unknown command {command}: {COMMANDS})", flush=True)
      continue
    ids, dropped, cut = session.prompt(line)
    if dropped:
      print(f"(the conversation no longer fits the context of {model_config.max_len} tokens "
            f"less --max_new_tokens: its {dropped} oldest messages were dropped)", flush=True)
    if cut:
      print("(the message is longer than the context allows: only its last tokens were read)",
            flush=True)
    tokens = sampling.stream_tokens(model, params, ids, rng=jax.random.fold_in(rng, turn),
                                    eos_id=template.end_id, **options)
    session.add_reply(print_streamed(template, tokens))


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
