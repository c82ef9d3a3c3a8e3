"""Quickstart: five domains of real text, three proxy rungs that vary size and tokens, on a CPU in a few minutes.

Run it with ``mixsearch study start studies/quickstart.py``. Nothing runs on import:
this file only declares the study.
"""

from mixsearch import Budget, Domain, EvaluatorSpec, FidelityLadder, Objective, ProposerSpec, Rung, Study

DOMAINS = ("code", "encyclopedia", "legal", "math", "conversation")

study = Study(
    name="quickstart",
    domains=tuple(Domain(name, f"demo:{name}") for name in DOMAINS),
    ladder=FidelityLadder(
        rungs=(
            # Three rungs that vary N and D, so the joint law of mixture and scale can tell
            # the size term from the data term and extrapolate both to the target.
            Rung("xs", n_params=100_000, tokens=80_000),
            Rung("xs-long", n_params=100_000, tokens=240_000),
            Rung("s", n_params=400_000, tokens=100_000),
        ),
        # The scale the answer is for: a 124M model on 2.5B tokens, extrapolated to.
        target=Rung("124M", n_params=124_000_000, tokens=2_500_000_000),
    ),
    # Validation loss averaged over the five domains (nats/token).
    objective=Objective(),
    budget=Budget(max_trials=12),
    # Multi-fidelity BO: a space-filling start over the rungs, then cost-aware picks.
    proposer=ProposerSpec("mfbo", batch_size=2),
    evaluator=EvaluatorSpec("proxy", {"device": "auto", "seq_len": 128, "batch_size": 16}),
    seed=0,
)
