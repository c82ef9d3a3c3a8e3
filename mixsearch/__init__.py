"""mixsearch: find the training-data mixture for a language model at a fraction of full-scale cost."""

from mixsearch.candidate import Candidate, TrialResult
from mixsearch.study import (
    Budget,
    ContinualPretraining,
    Domain,
    EvaluatorSpec,
    FidelityLadder,
    Objective,
    ProposerSpec,
    Rung,
    SearchSpace,
    Study,
    StudyError,
    TwoPhase,
)
from mixsearch.studyfile import load_study

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "Candidate",
    "ContinualPretraining",
    "Domain",
    "EvaluatorSpec",
    "FidelityLadder",
    "Objective",
    "ProposerSpec",
    "Rung",
    "SearchSpace",
    "Study",
    "StudyError",
    "TrialResult",
    "TwoPhase",
    "load_study",
    "__version__",
]
