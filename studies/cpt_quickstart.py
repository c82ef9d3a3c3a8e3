"""Continual pre-training quickstart: how much legal text can a base model take in, with replay?

A small base model is trained once on three general demo domains (code, encyclopedia,
conversation) and cached; each trial continues it on ``(1 - R)`` of that general mixture
and ``R`` of legal text for T more tokens. The study fits the critical mixture ratio laws
(Gu et al. 2024) on its own runs and answers with CMR at the target T: the largest share
of legal data that keeps the general loss within 5 % of the base model's. About five
minutes on two CPU cores, base model and corpus included.

Run it with ``mixsearch study start studies/cpt_quickstart.py``. Nothing runs on import:
this file only declares the study.
"""

from mixsearch import Budget, ContinualPretraining, Domain, EvaluatorSpec, FidelityLadder, Objective, ProposerSpec, Rung, Study

GENERAL = ("code", "encyclopedia", "conversation")
NEW = "legal"
N = 100_000  # the base model's non-embedding parameters

study = Study(
    name="cpt-quickstart",
    domains=tuple(Domain(name, f"demo:{name}") for name in (*GENERAL, NEW)),
    # Each rung continues the same base model (N) for T more tokens.
    ladder=FidelityLadder(
        rungs=(
            Rung("T-50k", n_params=N, tokens=50_000),
            Rung("T-100k", n_params=N, tokens=100_000),
            Rung("T-200k", n_params=N, tokens=200_000),
        ),
        # The answer is for continuing 400k tokens: twice the longest run, extrapolated to.
        target=Rung("T-400k", n_params=N, tokens=400_000),
    ),
    schedule=ContinualPretraining(
        new_domain=NEW,
        tolerance=0.05,  # the general loss may rise to 1.05 x the base model's
        base_tokens=500_000,  # the base model sees 500k tokens of the general mixture (uniform)
    ),
    # What continued training lowers: the legal validation loss (the tolerance bounds the general one).
    objective=Objective(domain_weights={NEW: 1.0}),
    budget=Budget(max_trials=10),
    # Runs where they most narrow the critical ratio at the target, per unit cost.
    proposer=ProposerSpec("cmr-search"),
    evaluator=EvaluatorSpec("proxy", {"device": "auto", "seq_len": 128, "batch_size": 16}),
    seed=0,
)
