"""The `:ARGS` suffix of --config=experiments/NAME.py:ARGS, and the shared `smoke` switch."""

from lm.errors import UserError


def parse_args(arg: str | None, allowed: tuple[str, ...]) -> set[str]:
  """'cpu,smoke' -> {'cpu', 'smoke'}; an argument the experiment does not know is an error."""
  args = {a.strip() for a in (arg or "").split(",") if a.strip()}
  unknown = sorted(args - set(allowed))
  if unknown:
    raise UserError(f"--config: unknown experiment argument(s) {', '.join(unknown)}; "
                    f"this experiment accepts {', '.join(allowed)}")
  return args


def shrink_to_smoke(config) -> None:
  """Shrinks any experiment to seconds on a CPU: tiny model, a few steps, a slice of validation."""
  config.model.update(num_layers=2,
                      num_heads=2,
                      num_kv_heads=0,
                      embed_dim=32,
                      mlp_dim=0,
                      max_len=16)
  config.train.update(steps=4,
                      batch_size=4,
                      grad_accum_steps=1,
                      warmup_steps=1,
                      eval_every=2,
                      eval_batches=2,
                      final_eval_batches=2,
                      eval_batch_size=8,
                      checkpoint_every=2,
                      log_every=1,
                      sample_tokens=8)
