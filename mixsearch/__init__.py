"""mixsearch: find the training-data mixture for a language model at a fraction of full-scale cost."""

from mixsearch.candidate import Candidate, TrialResult
from mixsearch.study import (
    Budget,
    Domain,
    EvaluatorSpec,
    FidelityLadder,
    Objective,
    ProposerSpec,
    Rung,
    SearchSpace,
    Study,
    StudyError,
)
from mixsearch.studyfile import load_study

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "Candidate",
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
    "load_study",
    "__version__",
]
