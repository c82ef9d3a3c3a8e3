"""Your own trainer as the world: mixsearch runs a training script once per trial.

Run it from the repository root with ``mixsearch study start studies/own_trainer.py`` (a few
seconds on a CPU). Each trial runs ``examples/own_trainer/train.py`` on a ``candidate.json``
and reads the ``metrics.json`` it writes; both, with the trial's log, are in
``runs/own-trainer/trials/<rung>-<hash>/``. Swap in your trainer's command to search its
mixture (docs/own-trainer.md). Nothing runs on import: this file only declares the study.
"""

import sys

from mixsearch import Budget, Domain, EvaluatorSpec, FidelityLadder, Objective, ProposerSpec, Rung, Study

study = Study(
    name="own-trainer",
    # The trainer knows where each domain's data is: no source here.
    domains=(Domain("web"), Domain("code"), Domain("math")),
    ladder=FidelityLadder(
        # N is the toy model's parameter count, D its training tokens.
        rungs=(Rung("s", n_params=768, tokens=20_000), Rung("m", n_params=3_072, tokens=80_000)),
        target=Rung("xl", n_params=12_288, tokens=320_000),
    ),
    objective=Objective(),  # mean validation loss over the domains, as metrics.json reports it
    budget=Budget(max_trials=12),
    proposer=ProposerSpec("centre-random", batch_size=2),
    evaluator=EvaluatorSpec(
        "command",
        {
            # The interpreter running mixsearch, so the script finds numpy wherever it runs.
            "command": [sys.executable, "examples/own_trainer/train.py", "--candidate", "{candidate}"],
            # A changed script is a new snapshot: new trials, new folders.
            "inputs": ["examples/own_trainer/train.py"],
            "timeout": 120,
        },
    ),
    seed=0,
)
