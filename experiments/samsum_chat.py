"""Multi-turn chat: the model plays one speaker of the SAMSum dialogues (Gliwa et al. 2019).

Data: samsum in the data root (see experiments/samsum.py): 14,732 training and 818 validation
chat dialogues. Each becomes a conversation (config.data.dialogue_field='dialogue',
lm/data/conversations.py): the second speaker to talk is the assistant, whose turns the model
learns (the loss on them only); the other speakers' lines, with their names, are the user's; a
system message names both sides ("You are Anna, chatting with Hugo."). A decoder from scratch
with this project's own chat template (role tokens after an 8k SentencePiece vocabulary).
Evaluated by the loss on the played speaker's turns and by generation: each of its turns (the
first 200 of the validation dialogues) is generated greedily after the turns before it and
scored against what the speaker said (eval/rougeL, eval/exact_match; eval_predictions.jsonl).

  cpu    a <= 60-minute recipe for a 2-core CPU (tokenizer training included)
  (none) the GPU recipe: a larger model, longer
  lora   LoRA fine-tuning of an imported chat model (its own Jinja template), given with
         --config.init_from (e.g. Qwen2-0.5B-Instruct, imported with lm.convert --from_hf)
  smoke  seconds

Commands (DATA=${LM_DATA_DIR:-../shared/data}):
  python -m lm.main --config=experiments/samsum_chat.py:cpu --workdir=runs/samsum_chat
  python -m lm.chat --workdir=runs/samsum_chat --system="You are Anna, chatting with Hugo." \\
      --temperature=0.7
  python -m lm.generate --workdir=runs/samsum_chat --chat --input=chats.jsonl --output=replies.txt
  python -m lm.convert --from_hf=DIR/Qwen2-0.5B-Instruct --workdir=runs/qwen2_chat
  python -m lm.main --config=experiments/samsum_chat.py:lora --workdir=runs/samsum_chat_qwen \\
      --config.init_from=runs/qwen2_chat
Expected (2-core CPU, cpu, measured; BENCHMARKS.md "Issue 25"): 62 min in all (tokenizer,
1,500 steps, 3 generation evaluations), validation loss 4.35 on the played speaker's turns
(perplexity 77), ROUGE-L 7.4 and exact match 0.5% on the first 200 turns; the replies are
generic ("I'm not sure." is 38% of them, and as a constant reply scores ROUGE-L 6.6): a 4-layer,
width-256 model trained for an hour holds the format, not the conversation. GPU recipe: to be
measured.
"""

from lm import defaults
from lm.data import data_root
from lm.experiment_args import parse_args, shrink_to_smoke


def get_config(arg: str | None = None):
  args = parse_args(arg, allowed=("cpu", "lora", "smoke"))
  config = defaults.base_config()
  config.task.kind = "chat"
  config.task.eval_generation = True
  config.task.max_new_tokens = 32
  config.data.source = data_root.path("samsum", "train.json.gz")
  config.data.valid_source = data_root.path("samsum", "val.json")
  config.data.dialogue_field = "dialogue"
  config.data.tokenizer = "sentencepiece"
  config.data.vocab_size = 8000
  config.model.update(norm="rmsnorm", mlp="swiglu", max_len=256, dropout=0.1)
  config.train.update(eval_batch_size=64,
                      learning_rate=1e-3,
                      min_learning_rate=1e-5,
                      weight_decay=0.01,
                      b2=0.98,
                      eval_examples=200,
                      keep_checkpoints=1,
                      sample_prompt="")
  if "lora" in args:  # The imported model's architecture, tokenizer and chat template.
    config.update(init_required=True, init_architecture="adopt")
    config.finetune.update(method="lora", lora_rank=16, lora_alpha=32.0,
                           lora_targets="query,key_value,out,wi_gate,wi_up,wo")
    config.train.update(batch_size=16, steps=600, warmup_steps=60, learning_rate=2e-4,
                        eval_every=200, checkpoint_every=200, log_every=20)
  elif "cpu" in args:
    config.model.update(num_layers=4, num_heads=4, embed_dim=256)
    config.train.update(batch_size=32, steps=1500, warmup_steps=150, eval_every=500,
                        checkpoint_every=500, log_every=50)
  else:
    config.model.update(num_layers=8, num_heads=8, embed_dim=512, dropout=0.2)
    config.train.update(batch_size=64, steps=10000, warmup_steps=500, eval_every=1000,
                        checkpoint_every=1000, log_every=100)
  if "smoke" in args:
    shrink_to_smoke(config)
    config.model.max_len = 64
    config.data.vocab_size = 500
    config.train.eval_examples = 8
    config.task.max_new_tokens = 8
  return config
