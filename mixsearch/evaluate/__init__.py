"""Every world a study runs in, behind one Evaluator protocol.

* ``proxy`` (:mod:`mixsearch.evaluate.proxy`): train small GPTs on the mixture.
* ``table`` (:mod:`mixsearch.evaluate.table`): replay published runs from a CSV.
* ``synthetic`` (:mod:`mixsearch.evaluate.synthetic`): a known law observed with noise.
* ``command`` (:mod:`mixsearch.evaluate.command`): the user's own training command.
* ``package.module:Class``: the user's own Python evaluator.
"""

from mixsearch.evaluate.base import EVALUATORS, Evaluator, PluginEvaluator, make_evaluator, result_from_mapping

__all__ = ["EVALUATORS", "Evaluator", "PluginEvaluator", "make_evaluator", "result_from_mapping"]
