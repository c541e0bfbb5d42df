"""PyTorch eager baseline: nanoGPT's CPU recipe for character-level Tiny Shakespeare.

A plain eager training loop (no torch.compile), used as the reference point the
JAX trainer is compared against. Recipe (defaults):

* data: character vocabulary of the whole file (65 chars for Tiny Shakespeare),
  train = first 90%, val = last 10%, random windows of ``block_size``.
* model: GPT-2 style pre-LN decoder, 4 layers, 4 heads, 128 wide, context 64,
  no biases, exact GELU, dropout 0, tied token embedding / output head,
  N(0, 0.02) init with residual projections scaled by 1/sqrt(2 * n_layer).
* optimizer: AdamW(lr 1e-3, betas (0.9, 0.99), weight decay 0.1 on >=2-D
  params only), global grad-norm clip 1.0, linear warmup 100 steps then cosine
  decay to 1e-4 at step 2000, batch 12, 2000 steps.
* eval: nanoGPT-style estimate (``eval_iters`` random batches per split) every
  ``eval_interval`` steps, at step 0 and at the end; plus ``full_val_loss``, the
  mean loss over every predicted token of the whole validation split, taken in
  non-overlapping windows of ``block_size``.

Run (full benchmark, from the repo root, on a quiet machine):

    .venv-torch/bin/python benchmarks/torch_baseline.py --json_out runs/torch_baseline.json

Setup: ``python3 -m venv .venv-torch && .venv-torch/bin/pip install -r benchmarks/requirements-torch.txt``
"""

from __future__ import annotations

import time

_SCRIPT_T0 = time.perf_counter()  # fallback for "time since process start"


def _seconds_since_process_start() -> float:
    """Wall-clock seconds since this process was started (Linux /proc), else since script start."""
    try:
        import os

        with open("/proc/self/stat") as f:
            stat = f.read()
        # Field 22 (starttime, in clock ticks since boot); skip past "(comm)" which may contain spaces.
        fields = stat[stat.rindex(")") + 2 :].split()
        start_ticks = int(fields[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except Exception:  # pragma: no cover - non-Linux fallback
        return time.perf_counter() - _SCRIPT_T0


import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

DEFAULT_DATA = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "tinyshakespeare", "input.txt"
)


# --------------------------------------------------------------------------- data


class CharData:
    """Character-level dataset: vocabulary = sorted set of chars of the whole file."""

    def __init__(self, path: str, train_frac: float = 0.9):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.chars = sorted(set(text))
        self.vocab_size = len(self.chars)
        lut = np.zeros(max(map(ord, self.chars)) + 1, dtype=np.int64)
        lut[[ord(c) for c in self.chars]] = np.arange(self.vocab_size)
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = torch.from_numpy(lut[codes])
        n_train = int(train_frac * len(ids))
        self.splits = {"train": ids[:n_train], "val": ids[n_train:]}

    def batch(self, split: str, batch_size: int, block_size: int):
        data = self.splits[split]
        # start uniform in [0, len - block_size - 1]
        starts = torch.randint(len(data) - block_size, (batch_size,))
        offsets = torch.arange(block_size)
        idx = starts[:, None] + offsets[None, :]
        return data[idx], data[idx + 1]


# -------------------------------------------------------------------------- model


def rotate_half_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding (Su et al. 2021), 'rotate half' convention; x is (B, H, T, D)."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        assert n_embd % n_head == 0, "n_embd must be divisible by n_head"
        self.n_head = n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=False)
        self.proj = nn.Linear(n_embd, n_embd, bias=False)
        self.proj.is_residual_proj = True

    def forward(self, x: torch.Tensor, rope=None) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=-1)
        # (B, T, C) -> (B, H, T, D)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        if rope is not None:
            q, k = rotate_half_rope(q, *rope), rotate_half_rope(k, *rope)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class MLP(nn.Module):
    def __init__(self, n_embd: int):
        super().__init__()
        self.up = nn.Linear(n_embd, 4 * n_embd, bias=False)
        self.down = nn.Linear(4 * n_embd, n_embd, bias=False)
        self.down.is_residual_proj = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))  # exact (erf) GELU


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd, bias=False)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln2 = nn.LayerNorm(n_embd, bias=False)
        self.mlp = MLP(n_embd)

    def forward(self, x: torch.Tensor, rope=None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), rope)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int,
                 rope: bool = False):
        super().__init__()
        self.block_size = block_size
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.pos_emb = None if rope else nn.Embedding(block_size, n_embd)
        if rope:  # Tables computed once for all layers (theta 10000).
            head_dim = n_embd // n_head
            inv_freq = 1.0 / 10000 ** (torch.arange(0, head_dim, 2).float() / head_dim)
            angles = torch.arange(block_size).float()[:, None] * inv_freq[None, :]
            self.register_buffer("rope_cos", angles.cos(), persistent=False)
            self.register_buffer("rope_sin", angles.sin(), persistent=False)
        self.blocks = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=False)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # weight tying

        resid_std = 0.02 / math.sqrt(2 * n_layer)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                std = resid_std if getattr(m, "is_residual_proj", False) else 0.02
                nn.init.normal_(m.weight, mean=0.0, std=std)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, reduction: str = "mean"):
        t = idx.shape[1]
        assert t <= self.block_size, f"sequence length {t} > block_size {self.block_size}"
        x = self.tok_emb(idx)
        rope = None
        if self.pos_emb is None:
            rope = (self.rope_cos[:t], self.rope_sin[:t])
        else:
            x = x + self.pos_emb(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x, rope)
        logits = self.head(self.ln_f(x))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction=reduction)
        return logits, loss


# ---------------------------------------------------------------------- training


def make_optimizer(model: nn.Module, lr: float, betas, weight_decay: float):
    params = [p for p in model.parameters() if p.requires_grad]  # .parameters() dedups the tied weight
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True), "fused"
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=True), "foreach"


def lr_at(step: int, lr: float, min_lr: float, warmup: int, decay_iters: int) -> float:
    if step < warmup:
        return lr * step / warmup  # linear 0 -> lr
    if step > decay_iters:
        return min_lr
    ratio = (step - warmup) / max(1, decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


@torch.no_grad()
def estimate_loss(model: GPT, data: CharData, eval_iters: int, batch_size: int, block_size: int) -> dict:
    model.eval()
    out = {}
    for split in ("train", "val"):
        losses = torch.empty(eval_iters)
        for k in range(eval_iters):
            x, y = data.batch(split, batch_size, block_size)
            losses[k] = model(x, y)[1]
        out[split] = losses.mean().item()
    model.train()
    return out


@torch.no_grad()
def full_split_loss(model: GPT, tokens: torch.Tensor, block_size: int, drop_tail: bool, windows_per_batch: int = 256):
    """Mean loss over every predicted token of ``tokens``, in non-overlapping windows of ``block_size``.

    Window j covers inputs tokens[j*T:(j+1)*T] and targets tokens[j*T+1:(j+1)*T+1]. The last
    ``(len - 1) % T`` targets form a shorter final window unless ``drop_tail``.
    """
    model.eval()
    n_targets = len(tokens) - 1
    n_full = n_targets // block_size
    total, count = 0.0, 0
    for s in range(0, n_full, windows_per_batch):
        e = min(n_full, s + windows_per_batch)
        x = tokens[s * block_size : e * block_size].view(e - s, block_size)
        y = tokens[s * block_size + 1 : e * block_size + 1].view(e - s, block_size)
        total += model(x, y, reduction="sum")[1].item()
        count += y.numel()
    tail = n_targets - n_full * block_size
    if tail and not drop_tail:
        x = tokens[n_full * block_size : n_full * block_size + tail][None]
        y = tokens[n_full * block_size + 1 :][None]
        total += model(x, y, reduction="sum")[1].item()
        count += y.numel()
    model.train()
    return total / count, count


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="text file (character-level)")
    p.add_argument("--steps", type=int, default=2000, help="training steps (max_iters)")
    p.add_argument("--batch_size", type=int, default=12)
    p.add_argument("--block_size", type=int, default=64)
    p.add_argument("--n_layer", type=int, default=4)
    p.add_argument("--n_head", type=int, default=4)
    p.add_argument("--n_embd", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min_lr", type=float, default=1e-4)
    p.add_argument("--warmup_iters", type=int, default=100)
    p.add_argument("--lr_decay_iters", type=int, default=2000)
    p.add_argument("--weight_decay", type=float, default=0.1)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.99)
    p.add_argument("--grad_clip", type=float, default=1.0, help="global grad-norm clip (0 disables)")
    p.add_argument("--eval_interval", type=int, default=250)
    p.add_argument("--eval_iters", type=int, default=20)
    p.add_argument("--log_interval", type=int, default=0, help="print the training loss every N steps (0: off)")
    p.add_argument("--timing_warmup", type=int, default=10, help="initial steps excluded from ms/step")
    p.add_argument("--full_val_drop_tail", action="store_true",
                   help="full_val_loss over whole windows only (drop the last (len-1) %% block_size targets)")
    p.add_argument("--rope", action="store_true", help="rotary positions instead of a learned table")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's default)")
    p.add_argument("--json_out", default=None, help="write the results as JSON to this path")
    p.add_argument("--lockstep", type=int, default=0,
                   help="benchmarks/lockstep.py: after warm-up, train in chunks of N steps, each "
                        "started by a line on stdin and reported as 'CHUNK seconds' (no evals)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    data = CharData(args.data)
    model = GPT(data.vocab_size, args.block_size, args.n_layer, args.n_head, args.n_embd, rope=args.rope)
    model.train()
    optimizer, opt_impl = make_optimizer(model, args.lr, (args.beta1, args.beta2), args.weight_decay)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"torch {torch.__version__} | threads {torch.get_num_threads()} | AdamW {opt_impl} | "
        f"vocab {data.vocab_size} | train {len(data.splits['train']):,} val {len(data.splits['val']):,} chars | "
        f"params {n_params / 1e6:.3f}M",
        flush=True,
    )

    evals = []

    def do_eval(step: int):
        t = time.perf_counter()
        losses = estimate_loss(model, data, args.eval_iters, args.batch_size, args.block_size)
        evals.append({"step": step, "train": losses["train"], "val": losses["val"]})
        print(f"step {step}: train {losses['train']:.4f} val {losses['val']:.4f}"
              f"  ({(time.perf_counter() - t) * 1e3:.0f} ms eval)", flush=True)
        return time.perf_counter() - t

    warm = min(args.timing_warmup, max(args.steps - 1, 0))
    timed_s = 0.0  # training time of steps >= warm, evals excluded
    chunk_start = 0.0
    for step in range(args.steps):
        if args.lockstep and step >= warm and (step - warm) % args.lockstep == 0:
            if step > warm:
                print(f"CHUNK {time.perf_counter() - chunk_start}", flush=True)
            else:
                print("READY", flush=True)
            sys.stdin.readline()
            chunk_start = time.perf_counter()
        if step % args.eval_interval == 0 and not args.lockstep:
            do_eval(step)
        t_step = time.perf_counter()
        lr = lr_at(step, args.lr, args.min_lr, args.warmup_iters, args.lr_decay_iters)
        for g in optimizer.param_groups:
            g["lr"] = lr
        x, y = data.batch("train", args.batch_size, args.block_size)
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        if args.log_interval and step % args.log_interval == 0:
            print(f"iter {step}: loss {loss.item():.4f} lr {lr:.2e}", flush=True)
        if step >= warm:
            timed_s += time.perf_counter() - t_step
    do_eval(args.steps)  # final step

    full_val, n_val_tokens = full_split_loss(model, data.splits["val"], args.block_size, args.full_val_drop_tail)
    print(f"full_val_loss {full_val:.4f} (over {n_val_tokens:,} val tokens)", flush=True)

    timed_steps = args.steps - warm
    ms_per_step = 1e3 * timed_s / timed_steps if timed_steps > 0 else float("nan")
    tokens_per_s = args.batch_size * args.block_size / (ms_per_step / 1e3) if timed_steps > 0 else float("nan")
    wall_s = _seconds_since_process_start()
    final = evals[-1]

    results = {
        "framework": "pytorch-eager",
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "optimizer_impl": opt_impl,
        "config": {k: v for k, v in vars(args).items() if k != "json_out"},
        "vocab_size": data.vocab_size,
        "n_params": n_params,
        "steps": args.steps,
        "timed_steps": timed_steps,
        "ms_per_step": ms_per_step,
        "tokens_per_s": tokens_per_s,
        "wall_clock_s": wall_s,
        "final_train_loss": final["train"],
        "final_val_loss": final["val"],
        "full_val_loss": full_val,
        "full_val_tokens": n_val_tokens,
        "evals": evals,
    }

    print()
    print("| steps | ms/step | tokens/s | wall-clock (s) | final val loss | full_val_loss | torch | threads |")
    print("|---:|---:|---:|---:|---:|---:|---|---:|")
    print(f"| {args.steps} | {ms_per_step:.2f} | {tokens_per_s:,.0f} | {wall_s:.1f} | {final['val']:.4f} | "
          f"{full_val:.4f} | {torch.__version__} | {torch.get_num_threads()} |")

    if args.json_out:
        out_dir = os.path.dirname(os.path.abspath(args.json_out))
        os.makedirs(out_dir, exist_ok=True)
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=2)
        print(f"\nwrote {args.json_out}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
