"""Scaling laws: fit, extrapolate to the target scale, export as JSON for planners.

Pure functions and frozen results; nothing here trains. The planner's entry point::

    from mixsearch import laws
    law = laws.load("fits/x.json", name="chinchilla")
    p = law.predict(N=7e10, D=1.4e12)   # p.value, p.lower, p.upper, p.extrapolated, p.factor_N, p.factor_D
    joint = laws.load("fits/runs.mixing.json")           # the joint law of mixture and scale
    joint.predict(weights={"web": 0.6, "code": 0.4}, N=1e9, D=2e10)
    joint.optimum(N=1e9, D=2e10)
"""

from mixsearch.laws.asymptote import (
    AsymptoteLaw,
    DataEfficiency,
    JointAsymptote,
    data_efficiency,
    fit_data_law,
    fit_ensemble_law,
    fit_size_law,
    joint_asymptote,
)
from mixsearch.laws.chinchilla import ChinchillaLaw, ComputeOptimal, fit_chinchilla
from mixsearch.laws.cmr import CMRLaw, CMRResult, critical_ratio, feasible_set, fit_cmr, fit_cmr_law, fit_increment_law, fit_ratio_law
from mixsearch.laws.export import SCHEMA_ID, law_from_dict, law_to_dict, load, load_all, save, validate_law_dict
from mixsearch.laws.fit import HUBER_DELTA, FitError, FitOptions, FitResult, fit_model
from mixsearch.laws.tied import fit_tied
from mixsearch.laws.joint import fit_joint, leave_one_scale_out
from mixsearch.laws.joint_law import JointLaw, JointOptimum, ScaleHoldout
from mixsearch.laws.law import Law, Prediction
from mixsearch.laws.mixing import MixingLaw, MixtureOptimum, fit_mixing
from mixsearch.laws.nested import fit_nested
from mixsearch.laws.study_laws import study_laws
from mixsearch.laws.table import LawSet, fit_table

__all__ = [
    "AsymptoteLaw",
    "CMRLaw",
    "CMRResult",
    "ChinchillaLaw",
    "ComputeOptimal",
    "DataEfficiency",
    "FitError",
    "FitOptions",
    "FitResult",
    "HUBER_DELTA",
    "JointAsymptote",
    "JointLaw",
    "JointOptimum",
    "Law",
    "LawSet",
    "MixingLaw",
    "MixtureOptimum",
    "Prediction",
    "SCHEMA_ID",
    "ScaleHoldout",
    "critical_ratio",
    "data_efficiency",
    "feasible_set",
    "fit_chinchilla",
    "fit_cmr",
    "fit_cmr_law",
    "fit_data_law",
    "fit_ensemble_law",
    "fit_increment_law",
    "fit_joint",
    "fit_mixing",
    "fit_model",
    "fit_nested",
    "fit_ratio_law",
    "fit_size_law",
    "fit_table",
    "fit_tied",
    "joint_asymptote",
    "law_from_dict",
    "law_to_dict",
    "leave_one_scale_out",
    "load",
    "load_all",
    "save",
    "study_laws",
    "validate_law_dict",
]
