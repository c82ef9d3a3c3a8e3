"""Proxy training throughput: tokens/s and MFU per model size, and batched packs of proxies.

What it measures, all with the real training step (:func:`mixsearch.proxy.train.make_train_step`:
forward, backward, per-model clipping, AdamW) on random tokens, so data loading is not timed:

1. Per model size: tokens/s and MFU of the optimised single run (on CUDA: bf16 autocast,
   ``torch.compile``, fused AdamW; on CPU: what ``train_proxy`` does there, fp32) and of an
   eager fp32 baseline, with the speed-up of one over the other.
2. Packs: aggregate tokens/s of P proxies trained at once (stacked weights, batched matmuls)
   against one proxy at a time, for P in ``--packs``.
3. With ``--compare-vmap``: the stacked-weights model against ``torch.func.vmap`` over
   ``functional_call`` of an ordinary ``nn.Linear`` GPT of the same shape (the design choice
   recorded in ``mixsearch/proxy/batched.py``).

FLOPs per token = ``6 (N + V d) + 12 L T d``: the weight matmuls forward and backward (tied
LM head included) plus attention scores and values at context T, ignoring the causal mask's
saving (PaLM's convention). MFU divides achieved FLOP/s by the device's *measured* peak: a
large bf16 matmul on CUDA, a large fp32 matmul on CPU (the dtype each optimised run uses).

Examples::

    python benchmarks/proxy_throughput.py --device cuda                  # full run (H100: a few minutes)
    python benchmarks/proxy_throughput.py --device cpu --quick          # CPU smoke figures
    python benchmarks/proxy_throughput.py --device cpu --quick --compare-vmap --json out.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mixsearch.proxy.model import GPT2_SMALL, ModelConfig, ProxyModel, apply_rope, rope_tables, size_config
from mixsearch.proxy.train import TrainConfig, make_train_step

SIZES = {"1M": 1_000_000, "10M": 10_000_000, "50M": 50_000_000, "124M": 124_000_000}
SEQ = {"1M": 256, "10M": 512, "50M": 1024, "124M": 1024, "gpt2": 1024}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measured_peak(device: torch.device, quick: bool) -> tuple[float, str]:
    """Best FLOP/s of a large square matmul in the optimised run's dtype."""
    if device.type == "cuda":
        n, dtype, reps = 8192, torch.bfloat16, 20
    else:
        n, dtype, reps = (1024 if quick else 2048), torch.float32, 5
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(3):
        sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - t) / reps)
    return 2 * n**3 / best, str(dtype).replace("torch.", "")


@dataclass
class Timing:
    tokens_per_s: float
    step_s: float
    peak_mem_gb: float


def time_steps(step: Callable[[], object], tokens_per_step: int, device: torch.device, warmup: int, steps: int) -> Timing:
    """Median-free simple timing: warm up (compiles), then time ``steps`` steps end to end."""
    for _ in range(warmup):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    dt = (time.perf_counter() - t) / steps
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return Timing(tokens_per_step / dt, dt, mem)


def proxy_step(cfg: ModelConfig, n_models: int, batch: int, device: torch.device, optimised: bool) -> tuple[Callable[[], object], int]:
    """A closure running one real training step of ``n_models`` stacked proxies on random tokens."""
    model = ProxyModel(cfg, n_models).to(device)
    train = TrainConfig(seq_len=cfg.seq_len, batch_size=batch, compile=None if optimised else False)
    if optimised:
        step = make_train_step(model, train, device)
    else:
        # Eager fp32 with the default (foreach) AdamW: the baseline on every device.
        step = _eager_fp32_step(model, train)
    gen = torch.Generator(device=device).manual_seed(0)
    xy = torch.randint(0, cfg.vocab_size, (n_models, batch, cfg.seq_len + 1), device=device, generator=gen)
    return (lambda: step(xy, 1e-3)), n_models * batch * cfg.seq_len


def _eager_fp32_step(model: ProxyModel, train: TrainConfig) -> Callable[[torch.Tensor, float], torch.Tensor]:
    opt = torch.optim.AdamW(model.decay_groups(train.weight_decay), lr=1e-3, betas=train.betas)

    def step(xy: torch.Tensor, lr: float) -> torch.Tensor:
        loss = model(xy[..., :-1], xy[..., 1:])
        loss.sum().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def size_rows(args: argparse.Namespace, device: torch.device, peak: float) -> list[dict]:
    rows = []
    for label in args.sizes.split(","):
        seq = args.seq or SEQ.get(label, 256)
        cfg = GPT2_SMALL if label == "gpt2" else size_config(SIZES[label], args.vocab_size, seq)
        cfg = ModelConfig(cfg.vocab_size, cfg.n_layer, cfg.n_head, cfg.d_model, seq, cfg.rope)
        batch = args.batch or max(1, args.tokens_per_step // seq)
        fpt = cfg.flops_per_token(seq)
        row = {"size": label, "n_params": cfg.n_params, "shape": f"{cfg.n_layer}x{cfg.d_model}", "seq": seq, "batch": batch}
        for name, optimised in (("optimised", True), ("eager_fp32", False)):
            step, tps = proxy_step(cfg, 1, batch, device, optimised)
            t = time_steps(step, tps, device, args.warmup, args.steps)
            row[f"{name}_tok_s"] = t.tokens_per_s
            row[f"{name}_mfu"] = t.tokens_per_s * fpt / peak
            row[f"{name}_mem_gb"] = t.peak_mem_gb
            del step
            if device.type == "cuda":
                torch.cuda.empty_cache()
        row["speedup"] = row["optimised_tok_s"] / row["eager_fp32_tok_s"]
        rows.append(row)
        print(
            f"size {label:>5} N={cfg.n_params:>11,} {row['shape']:>8} T={seq:<5} B={batch:<4} "
            f"optimised {row['optimised_tok_s']:>12,.0f} tok/s MFU {row['optimised_mfu']:6.1%} | "
            f"eager fp32 {row['eager_fp32_tok_s']:>12,.0f} tok/s MFU {row['eager_fp32_mfu']:6.1%} | x{row['speedup']:.2f}",
            flush=True,
        )
    return rows


def pack_rows(args: argparse.Namespace, device: torch.device) -> list[dict]:
    rows = []
    for label in args.pack_sizes.split(","):
        cfg = size_config(SIZES[label], args.vocab_size, args.pack_seq)
        step, tps = proxy_step(cfg, 1, args.pack_batch, device, True)
        one = time_steps(step, tps, device, args.warmup, args.steps)
        del step
        for P in (int(p) for p in args.packs.split(",")):
            step, tps = proxy_step(cfg, P, args.pack_batch, device, True)
            many = time_steps(step, tps, device, args.warmup, max(1, args.steps // 2) if P > 16 else args.steps)
            del step
            if device.type == "cuda":
                torch.cuda.empty_cache()
            row = {
                "size": label,
                "n_params": cfg.n_params,
                "P": P,
                "seq": args.pack_seq,
                "batch_per_proxy": args.pack_batch,
                "one_at_a_time_tok_s": one.tokens_per_s,
                "packed_tok_s": many.tokens_per_s,
                "ratio": many.tokens_per_s / one.tokens_per_s,
                "packed_mem_gb": many.peak_mem_gb,
            }
            rows.append(row)
            print(
                f"pack  {label:>5} P={P:<3} one at a time {one.tokens_per_s:>12,.0f} tok/s | "
                f"packed {many.tokens_per_s:>12,.0f} tok/s aggregate | x{row['ratio']:.2f}",
                flush=True,
            )
    return rows


# -- the alternative design: vmap over functional_call of a plain GPT ------------------


class _PlainBlock(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.h = c.n_head
        self.ln1 = nn.LayerNorm(c.d_model, bias=False)
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model, bias=False)
        self.proj = nn.Linear(c.d_model, c.d_model, bias=False)
        self.ln2 = nn.LayerNorm(c.d_model, bias=False)
        self.fc = nn.Linear(c.d_model, 4 * c.d_model, bias=False)
        self.out = nn.Linear(4 * c.d_model, c.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.h, d // self.h).unbind(2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class _PlainGPT(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.wte = nn.Embedding(c.vocab_size, c.d_model)
        self.blocks = nn.ModuleList(_PlainBlock(c) for _ in range(c.n_layer))
        self.ln = nn.LayerNorm(c.d_model, bias=False)
        cos, sin = rope_tables(c.seq_len, c.head_dim)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        logits = self.ln(x) @ self.wte.weight.T
        return F.cross_entropy(logits.view(-1, logits.shape[-1]).float(), targets.reshape(-1))


def vmap_rows(args: argparse.Namespace, device: torch.device) -> list[dict]:
    from torch.func import functional_call, stack_module_state, vmap

    warnings.filterwarnings("ignore", message=".*batching rule.*")
    rows = []
    for label in args.pack_sizes.split(","):
        cfg = size_config(SIZES[label], args.vocab_size, args.pack_seq)
        for P in (int(p) for p in args.packs.split(",")):
            stacked, tps = proxy_step(cfg, P, args.pack_batch, device, False)
            models = [_PlainGPT(cfg).to(device) for _ in range(P)]
            params, buffers = stack_module_state(models)
            params = {k: v.detach().requires_grad_() for k, v in params.items()}
            base = copy.deepcopy(models[0]).to("meta")
            opt = torch.optim.AdamW(params.values(), lr=1e-3)
            fn = vmap(lambda p, b, x, y: functional_call(base, (p, b), (x, y)))
            xy = torch.randint(0, cfg.vocab_size, (P, args.pack_batch, cfg.seq_len + 1), device=device)

            def vstep() -> None:
                loss = fn(params, buffers, xy[..., :-1], xy[..., 1:])
                loss.sum().backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            a = time_steps(stacked, tps, device, args.warmup, args.steps)
            b = time_steps(vstep, tps, device, args.warmup, args.steps)
            rows.append({"size": label, "P": P, "stacked_tok_s": a.tokens_per_s, "vmap_tok_s": b.tokens_per_s, "stacked_over_vmap": a.tokens_per_s / b.tokens_per_s})
            print(f"vmap  {label:>5} P={P:<3} stacked bmm {a.tokens_per_s:>12,.0f} tok/s | vmap {b.tokens_per_s:>12,.0f} tok/s | x{a.tokens_per_s / b.tokens_per_s:.2f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto")
    ap.add_argument("--sizes", default=None, help="comma list of 1M,10M,50M,124M,gpt2 (default: all four ladder sizes; 1M with --quick)")
    ap.add_argument("--quick", action="store_true", help="small settings for a CPU")
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--seq", type=int, default=None, help="context length for every size (default: 256/512/1024/1024)")
    ap.add_argument("--batch", type=int, default=None, help="sequences per step (default: tokens-per-step / seq)")
    ap.add_argument("--tokens-per-step", type=int, default=None)
    ap.add_argument("--packs", default=None, help="comma list of proxies per pack (default 8,32,64; 8 with --quick)")
    ap.add_argument("--pack-sizes", default=None, help="model sizes for the pack test (default 1M,10M; 1M with --quick)")
    ap.add_argument("--pack-seq", type=int, default=256)
    ap.add_argument("--pack-batch", type=int, default=None, help="sequences per proxy per step (default 16; 4 with --quick)")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--compare-vmap", action="store_true", help="also time vmap(functional_call) against stacked weights")
    ap.add_argument("--skip-sizes", action="store_true")
    ap.add_argument("--skip-packs", action="store_true")
    ap.add_argument("--json", default=None, help="write all figures to this file")
    args = ap.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    q = args.quick
    args.sizes = args.sizes or ("1M" if q else "1M,10M,50M,124M")
    args.packs = args.packs or ("8" if q else "8,32,64")
    args.pack_sizes = args.pack_sizes or ("1M" if q else "1M,10M")
    args.pack_batch = args.pack_batch or (4 if q else 16)
    args.tokens_per_step = args.tokens_per_step or (2048 if q else 65536)
    args.warmup = args.warmup if args.warmup is not None else (1 if q else 5)
    args.steps = args.steps or (3 if q else 20)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    peak, peak_dtype = measured_peak(device, q)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"device {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}, measured peak {peak / 1e12:.2f} TFLOP/s ({peak_dtype} matmul)")
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}", flush=True)
    out = {"device": str(device), "device_name": name, "torch": torch.__version__, "threads": torch.get_num_threads(), "peak_flops": peak, "peak_dtype": peak_dtype, "args": vars(args)}
    if not args.skip_sizes:
        out["sizes"] = size_rows(args, device, peak)
    if not args.skip_packs:
        out["packs"] = pack_rows(args, device)
    if args.compare_vmap:
        out["vmap"] = vmap_rows(args, device)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
