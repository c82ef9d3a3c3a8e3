"""A toy trainer that mixsearch runs once per trial: the shape of your own training script.

mixsearch writes ``candidate.json`` (the mixture by domain name, the rung's model size N
and training tokens D, the seed, where to write results) and runs this script on it. The
script trains a small next-token model on that mixture of toy domains, measures each
domain's validation loss, and writes ``metrics.json``. Your trainer keeps the two ends
(read the candidate, write the metrics) and puts real training in the middle.

The toy: each domain is a first-order Markov "language" over 48 tokens whose transitions
share a common part (so training on one domain helps the others a little) and have a
domain-specific part of a strength that differs by domain. The model is a factorised bigram LM, ``logits = emb[x] @ out + b``,
with the rank chosen so that its parameter count is about N; it is trained with Adam on
D tokens drawn from the domains in the mixture's proportions. Pure numpy, well under a
second per run. See docs/own-trainer.md.

Run by hand::

    python examples/own_trainer/train.py --candidate runs/own-trainer/trials/<trial>/candidate.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import zlib
from pathlib import Path

import numpy as np

VOCAB = 48
BATCH = 256  # (previous token, next token) pairs per step
EVAL_PAIRS = 4096  # held-out pairs per domain


def domain_chain(name: str) -> np.ndarray:
    """The domain's transition matrix ``[V, V]``: a shared part plus a part of its own."""
    key = zlib.crc32(name.encode())
    shared = np.random.default_rng(1234).normal(size=(VOCAB, VOCAB))
    own = np.random.default_rng(key).normal(size=(VOCAB, VOCAB))
    sharpness = 1.5 + 2.0 * (key % 1000) / 1000  # some domains are more predictable than others
    logits = 1.5 * shared + sharpness * own
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def sample_pairs(chain: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (token, next token) pairs: tokens uniform, next tokens from the chain."""
    x = rng.integers(0, VOCAB, size=n)
    u = rng.random(n)[:, None]
    y = (chain[x].cumsum(axis=1) < u).sum(axis=1).clip(0, VOCAB - 1)
    return x, y


def train(mixture: dict[str, float], n_params: int, tokens: int, seed: int) -> dict:
    """Train on ``tokens`` pairs drawn by ``mixture``; per-domain validation loss and accuracy."""
    rng = np.random.default_rng(seed)
    chains = {d: domain_chain(d) for d in mixture}
    names = list(mixture)
    probs = np.array([mixture[d] for d in names])
    rank = max(2, min(VOCAB, n_params // (2 * VOCAB)))  # N = 2 * V * rank (+ V biases)
    params = {"emb": rng.normal(scale=0.1, size=(VOCAB, rank)), "out": rng.normal(scale=0.1, size=(rank, VOCAB)), "b": np.zeros(VOCAB)}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v2 = {k: np.zeros_like(v) for k, v in params.items()}
    steps = max(1, tokens // BATCH)
    curve = []
    for step in range(steps):
        # The mixture decides how many of this batch's pairs each domain gives.
        counts = rng.multinomial(BATCH, probs / probs.sum())
        xs, ys = zip(*(sample_pairs(chains[d], c, rng) for d, c in zip(names, counts) if c))
        x, y = np.concatenate(xs), np.concatenate(ys)
        h = params["emb"][x]  # [B, r]
        logits = h @ params["out"] + params["b"]  # [B, V]
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
        g = p
        g[np.arange(len(y)), y] -= 1.0
        g /= len(y)  # dloss/dlogits [B, V]
        grads = {"out": h.T @ g, "b": g.sum(axis=0), "emb": np.zeros_like(params["emb"])}
        np.add.at(grads["emb"], x, g @ params["out"].T)
        lr = 0.05 * 0.5 * (1 + math.cos(math.pi * step / steps))  # cosine decay
        for k in params:  # Adam
            m[k] = 0.9 * m[k] + 0.1 * grads[k]
            v2[k] = 0.999 * v2[k] + 0.001 * grads[k] ** 2
            mhat, vhat = m[k] / (1 - 0.9 ** (step + 1)), v2[k] / (1 - 0.999 ** (step + 1))
            params[k] -= lr * mhat / (np.sqrt(vhat) + 1e-8)
        if step % max(1, steps // 20) == 0 or step == steps - 1:
            curve.append([(step + 1) * BATCH, loss])
    losses, accuracies = {}, {}
    held_out = np.random.default_rng(999)  # the same validation pairs for every trial
    for d in names:
        x, y = sample_pairs(chains[d], EVAL_PAIRS, held_out)
        logits = params["emb"][x] @ params["out"] + params["b"]
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        losses[d] = float(-logp[np.arange(len(y)), y].mean())
        accuracies[d] = float((logits.argmax(axis=1) == y).mean())
    return {
        "domain_losses": losses,
        "metrics": {"accuracy": float(np.mean(list(accuracies.values()))), "train_loss": curve[-1][1], "rank": rank},
        "curve": curve,
        "cost": 6.0 * (2 * VOCAB * rank + VOCAB) * steps * BATCH,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", default=os.environ.get("MIXSEARCH_CANDIDATE"), help="candidate.json written by mixsearch (default: $MIXSEARCH_CANDIDATE)")
    args = parser.parse_args()
    if not args.candidate:
        parser.error("give --candidate or set MIXSEARCH_CANDIDATE")
    candidate = json.loads(Path(args.candidate).read_text())
    rung = candidate["rung"]
    print(f"training rung {rung['name']} (N={rung['n_params']}, D={rung['tokens']}) on {candidate['mixture']}, seed {candidate['seed']}")
    result = train(candidate["mixture"], int(rung["n_params"]), int(rung["tokens"]), int(candidate["seed"]))
    print("validation loss: " + ", ".join(f"{d}={v:.4f}" for d, v in result["domain_losses"].items()))
    # Write the metrics last and in one go: mixsearch reads the file once the script exits 0.
    metrics = Path(candidate["metrics"])
    tmp = metrics.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(metrics)


if __name__ == "__main__":
    main()
