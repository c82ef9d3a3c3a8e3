"""Target checks: runs at the target that keep the cheap rungs honest.

A multi-fidelity Surrogate learns how far a cheap rung's ranking of mixtures is from the
target's (the discrepancy term of its kernel) only from runs *at* the target. Without them
its prior says proxies agree, the acquisition keeps buying cheap runs, and a world whose
small models prefer other mixtures (instruction-tuning runs whose 0.5B and 3B rankings
correlate with 7B at rho 0.55-0.65) is never noticed: the search spends its budget on
rungs that have stopped paying for themselves.

A target check gives the cheap rungs an allowance: once their spend since the study began
exceeds ``allowance`` target-run costs per target trial (done or pending), the next proposal
is a run at the target, the acquisition's best one there (a check where the proxies already
put the optimum would teach little about where they disagree with the target). The hope:
if the target agrees with the proxies the fitted discrepancy stays small and cheap runs go
on; if not, it grows, a cheap run's information about the target per unit cost falls, and
the acquisition moves the budget to the target.

Measured on ``synthetic:weak-proxy`` (docs/BENCHMARKS.md), the hope holds only in part: with
the default kernel, whose prior says a cheap rung's discrepancy is a tenth of the target's
variance, a few target runs do not make it grow enough, and the checks leave mfbo where it
was. So checks are an option (``proxy_allowance``), off by default.

With an allowance of one target run, a ladder whose cheap rungs cost 1/60 of the target
(the RegMix table) spends 60 cheap runs before the first check; one whose proxies cost
1/14 and 3/7 of it spends a handful.
"""

from __future__ import annotations

from mixsearch.propose.base import ProposalContext
from mixsearch.propose.fidelity import FidelityEncoder


def proxy_spend(ctx: ProposalContext, enc: FidelityEncoder) -> tuple[float, int]:
    """``(cost of done and pending cheap-rung trials in target-run units, target trials)``.

    Failed trials are left out: the bench and the budget charge them nothing.
    """
    h = ctx.history
    unit = enc.costs[enc.target]
    rungs = [*h.rungs, *h.pending_rungs]
    cheap = sum(enc.costs.get(r, 0.0) for r in rungs if r != enc.target) / unit
    return float(cheap), sum(1 for r in rungs if r == enc.target)


def check_due(ctx: ProposalContext, enc: FidelityEncoder, allowance: float | None) -> bool:
    """Whether the next proposal should be a check at the target.

    It is when the target is runnable, there are cheap rungs, ``allowance`` is set, and
    the cheap rungs have spent at least ``allowance`` target-run costs per target trial
    plus one (the first check comes after one allowance).
    """
    if not allowance or not enc.target_runnable or len(enc.runnable) < 2:
        return False
    cheap, at_target = proxy_spend(ctx, enc)
    return cheap >= allowance * (at_target + 1)

