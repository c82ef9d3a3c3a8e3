"""The ``proxy`` world: a candidate becomes a trained proxy GPT and its per-domain validation losses.

In a continual pre-training study each trial continues the base model of its rung's size
(trained once on the base mixture and cached, or the study's checkpoint) on the
candidate's mixture for the rung's tokens, and reports the base model's losses beside its
own. A two-phase candidate trains on its first mixture, then its second from the switch.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import time
from pathlib import Path

import torch
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from mixsearch.candidate import Candidate, EvaluationError, Pool, TrialResult
from mixsearch.proxy.corpus import DEFAULT_MAX_BYTES_PER_DOMAIN, DEFAULT_VOCAB_SIZE, Corpus, build_corpus
from mixsearch.proxy.sources import DEMO_DOMAINS, user_files
from mixsearch.proxy.train import ProxyRunResult, TrainConfig
from mixsearch.study import ContinualPretraining, Domain, Objective, Rung, Schedule, StudyError
from mixsearch.threads import threads_for

if TYPE_CHECKING:
    from mixsearch.study import Study

# Options that shape the corpus, options that shape training (TrainConfig fields), and
# options that only say where or how fast to run (they do not enter the snapshot id).
CORPUS_OPTIONS = ("vocab_size", "max_bytes_per_domain", "cache_dir")
TRAIN_OPTIONS = tuple(TrainConfig.__dataclass_fields__)
RUN_OPTIONS = ("device", "compile", "max_pack")


class ProxyEvaluator:
    """Trains a proxy on each candidate's mixture at its rung's size and token budget.

    Construction is cheap and the object pickles small (Ray ships it); :meth:`prepare`
    builds or finds the cached corpus.

    Args:
        domains: The study's domains (name and source), in weight order.
        objective: Turns per-domain losses into the study objective.
        options: Evaluator options: ``device``, ``seq_len``, ``batch_size``, ``lr``,
            ``eval_tokens``, ``compile``, ``vocab_size``, ``max_bytes_per_domain``,
            ``cache_dir``, ``max_pack``, and any other :class:`TrainConfig` field.

    Raises:
        StudyError: an unknown or invalid option, naming ``evaluator.options.<name>``.
    """

    def __init__(self, domains: Sequence[Domain], objective: Objective | None = None, options: Mapping[str, Any] | None = None, schedule: Schedule | None = None) -> None:
        self.domains = tuple(domains)
        self.objective = objective or Objective()
        self.options = dict(options or {})
        self.schedule = schedule
        self._bases: dict[tuple[int, int], Any] = {}  # (N, seed) -> BaseModel, this process's copy
        known = set(CORPUS_OPTIONS) | set(TRAIN_OPTIONS) | set(RUN_OPTIONS)
        for key in self.options:
            if key not in known:
                raise StudyError(f"evaluator.options.{key}", f"unknown proxy option; known: {', '.join(sorted(known))}")
        try:
            self.train_config = TrainConfig(**{k: v for k, v in self.options.items() if k in TRAIN_OPTIONS})
        except (TypeError, ValueError) as exc:
            raise StudyError("evaluator.options", str(exc)) from None
        self._corpus: Corpus | None = None
        self._expected_hash: str | None = None

    @classmethod
    def from_study(cls, study: "Study") -> "ProxyEvaluator":
        """The evaluator a study's ``evaluator`` spec describes, after checking what it needs.

        Raises:
            StudyError: a domain without a readable source, a rung without N and D, an
                unknown option, or an objective on a metric proxies do not report.
        """
        for i, d in enumerate(study.domains):
            check_source(d, i)
        for i, r in enumerate(study.ladder.rungs):
            if r.n_params is None or r.tokens is None:
                raise StudyError(f"ladder.rungs[{i}]", "a proxy rung needs n_params and tokens")
        if study.objective.metric is not None:
            raise StudyError("objective.metric", f"proxies report validation losses, not {study.objective.metric!r}; use the default Objective or domain_weights")
        sch = study.schedule
        if isinstance(sch, ContinualPretraining):
            if sch.base_checkpoint is None and sch.base_tokens is None and sch.base_tokens_per_param is None:
                raise StudyError("schedule.base_tokens", "the proxy evaluator trains the base model: set base_tokens or base_tokens_per_param (or base_checkpoint)")
            if sch.base_checkpoint is not None and not Path(os.fspath(sch.base_checkpoint)).expanduser().is_file():
                raise StudyError("schedule.base_checkpoint", f"checkpoint file not found: {os.fspath(sch.base_checkpoint)!r}")
        # Sources may be given as paths; the corpus (and its hash) reads strings.
        domains = tuple(Domain(d.name, os.fspath(d.source)) for d in study.domains)
        return cls(domains, study.objective, study.evaluator.options, sch)

    # -- set-up ------------------------------------------------------------------------

    def prepare(self) -> None:
        """Build or load the corpus; cheap when cached. Idempotent.

        Raises:
            EvaluationError: this machine built a corpus that differs from the one the
                evaluator was prepared with elsewhere (results would not be comparable).
        """
        if self._corpus is not None and (self._corpus.path / "manifest.json").is_file():
            return
        corpus = build_corpus(
            self.domains,
            cache_dir=self.options.get("cache_dir"),
            vocab_size=int(self.options.get("vocab_size", DEFAULT_VOCAB_SIZE)),
            max_bytes_per_domain=int(self.options.get("max_bytes_per_domain", DEFAULT_MAX_BYTES_PER_DOMAIN)),
        )
        if self._expected_hash is not None and corpus.hash != self._expected_hash:
            raise EvaluationError(
                f"corpus {corpus.hash} built here differs from {self._expected_hash} the study uses "
                "(different Python version for demo:code, or changed files?)"
            )
        self._corpus = corpus
        self._expected_hash = corpus.hash

    @property
    def corpus(self) -> Corpus:
        """The prepared corpus (prepares on first use)."""
        self.prepare()
        assert self._corpus is not None
        return self._corpus

    def snapshot_id(self) -> str:
        """Corpus content hash plus a hash of the training settings that change results."""
        # Where and how fast a run goes (compile, logging) does not change what it learns.
        settings = {k: v for k, v in self.train_config.as_dict().items() if k not in ("compile", "log_every")}
        train = json.dumps(settings, sort_keys=True, default=str)
        out = f"{self.corpus.hash}-{hashlib.sha256(train.encode()).hexdigest()[:8]}"
        if isinstance(self.schedule, ContinualPretraining) and self.schedule.base_checkpoint is not None:
            # A user's checkpoint is data: an edited file is a new snapshot.
            blob = Path(os.fspath(self.schedule.base_checkpoint)).expanduser().read_bytes()
            out += f"-ckpt{hashlib.sha256(blob).hexdigest()[:8]}"
        return out

    def data_tokens(self) -> dict[str, int]:
        """Training tokens per domain in the corpus (for the epochs-at-the-target warning)."""
        return {name: int(d["train_tokens"]) for name, d in self.corpus.manifest["domains"].items()}

    def pool(self) -> Pool | None:
        """Any mixture can be trained: no pool."""
        return None

    # -- evaluation --------------------------------------------------------------------

    def _train_kwargs(self) -> dict[str, Any]:
        return {
            **self.train_config.as_dict(),
            "device": self.options.get("device", "auto"),
        }

    def evaluate(self, candidate: Candidate, rung: Rung) -> TrialResult:
        """Train one proxy and score it.

        Raises:
            EvaluationError: the run diverged.
        """
        (out,) = self.evaluate_many([candidate], [rung])
        if isinstance(out, EvaluationError):
            raise out
        return out

    def evaluate_many(self, candidates: Sequence[Candidate], rungs: Sequence[Rung]) -> list[TrialResult | EvaluationError]:
        """Train candidates that share a rung together (batched proxies).

        Returns:
            One entry per candidate, in order: its result, or an
            :class:`EvaluationError` in place of a proxy that diverged (its pack-mates
            are unaffected).
        """
        from mixsearch.proxy.batched import train_proxies

        if len(candidates) != len(rungs):
            raise ValueError(f"evaluate_many: {len(candidates)} candidates but {len(rungs)} rungs")
        out: list[TrialResult | EvaluationError | None] = [None] * len(candidates)
        groups: dict[tuple[str, int], list[int]] = {}
        continual = isinstance(self.schedule, ContinualPretraining)
        for i, (c, r) in enumerate(zip(candidates, rungs)):
            self._check(c, r)
            # Continued runs of one pack share a base model: one per size and seed.
            groups.setdefault((r.name, c.seed if continual else 0), []).append(i)
        torch.set_num_threads(threads_for("proxy"))
        for (_, seed), idx in groups.items():
            rung = rungs[idx[0]]
            base = None
            if continual:
                try:
                    base = self.base(int(rung.n_params), seed)  # type: ignore[arg-type]
                except EvaluationError as exc:
                    for i in idx:
                        out[i] = exc
                    continue
            phases = [None if candidates[i].schedule is None else (candidates[i].schedule.second, candidates[i].schedule.switch) for i in idx]  # type: ignore[union-attr]
            runs = train_proxies(
                self.corpus,
                [candidates[i].weights if candidates[i].schedule is None else candidates[i].schedule.first for i in idx],  # type: ignore[union-attr]
                rung.n_params,
                rung.tokens,
                [candidates[i].seed for i in idx],
                max_pack=self.options.get("max_pack"),
                phases=phases if any(ph is not None for ph in phases) else None,
                init=None if base is None else (base.config, base.state),
                **self._train_kwargs(),
            )
            for i, run in zip(idx, runs):
                out[i] = EvaluationError(run.diverged) if run.diverged else self._result(run, rung, base)
            if base is not None:
                # Only the first trial that needed the base reports the time spent training it.
                self._bases[(int(rung.n_params), seed)] = dataclasses.replace(base, meta={**base.meta, "seconds": 0.0})
        return out  # type: ignore[return-value]

    def base(self, n_params: int, seed: int) -> Any:
        """The base model a continual pre-training trial at size ``n_params`` continues
        (:class:`~mixsearch.proxy.continual.BaseModel`): the study's checkpoint, or the one
        trained on the base mixture (from the disk cache when another trial built it).

        Raises:
            EvaluationError: the checkpoint does not fit the corpus, or the base run diverged.
        """
        from mixsearch.proxy.continual import base_model, load_checkpoint

        sch = self.schedule
        assert isinstance(sch, ContinualPretraining)
        key = (int(n_params), int(seed))
        if key not in self._bases:
            names = [d.name for d in self.domains]
            try:
                if sch.base_checkpoint is not None:
                    self._bases[key] = load_checkpoint(os.fspath(sch.base_checkpoint), self.corpus, self.options.get("device", "auto"), self.train_config.seq_len, self.train_config.eval_tokens)
                else:
                    self._bases[key] = base_model(self.corpus, int(n_params), sch.base_weights(names), sch.base_tokens_for(int(n_params)), self.train_config, int(seed), self.options.get("device", "auto"))
            except ValueError as exc:
                raise EvaluationError(str(exc)) from None
        return self._bases[key]
    def _check(self, candidate: Candidate, rung: Rung) -> None:
        if rung.n_params is None or rung.tokens is None:
            raise ValueError(f"rung {rung.name!r}: a proxy rung needs n_params and tokens")
        if len(candidate.weights) != len(self.domains):
            raise ValueError(f"candidate has {len(candidate.weights)} weights for {len(self.domains)} domains")

    def _result(self, run: ProxyRunResult, rung: Rung, base: Any = None) -> TrialResult:
        model = run.config["model"]
        metrics = {
            "n_params": run.n_params,
            "n_params_total": run.n_params_total,
            "n_layer": model["n_layer"],
            "n_head": model["n_head"],
            "d_model": model["d_model"],
            "tokens": run.tokens,
            "flops": run.flops,
            "tokens_per_s": run.tokens_per_s,
            "device": run.device,
            "steps": run.config["train"]["steps"],
            "lr": run.config["train"]["lr"],
            "pack_size": run.pack_size,
            "domain_tokens": dict(run.domain_tokens),
            "finished_at": time.time(),
        }
        if "phases" in run.config:
            metrics["switch_step"] = run.config["phases"]["switch_step"]
        if base is not None:
            # What the CMR laws compare against: the base model's own losses, and how it was made.
            metrics.update(
                base_losses=dict(base.losses),
                base_n_params=base.n_params,
                base_tokens=base.meta.get("tokens"),
                base_flops=base.meta.get("flops"),
                base_checkpoint=base.meta.get("path"),
                base_seconds=float(base.meta.get("seconds") or 0.0),
                continued_tokens=run.tokens,
            )
        return TrialResult(
            domain_losses=dict(run.domain_losses),
            objective=self.objective.value(run.domain_losses),
            cost=rung.run_cost,
            seconds=run.seconds,
            curve=[(float(t), float(v)) for t, v in run.curve],
            metrics=metrics,
        )

    # -- pickling ----------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # The corpus is re-opened (or rebuilt) where the evaluator lands; only the
        # expected hash travels, so a mismatching rebuild is caught.
        state = dict(self.__dict__)
        state["_corpus"] = None
        state["_bases"] = {}  # re-read from the disk cache where the evaluator lands
        return state


def check_source(domain: Domain, i: int) -> None:
    """Raise a StudyError naming ``domains[i].source`` unless the domain's text can be found.

    A demo domain must be one of :data:`DEMO_DOMAINS`; a folder, file or glob must name at
    least one ``.txt``, ``.jsonl`` or ``.parquet`` file (their contents are read, and
    checked, when the corpus is built).

    Args:
        domain: The domain.
        i: Its index in the study's domains (for the field name).
    """
    where = f"domains[{i}].source"
    if domain.source is None:
        raise StudyError(where, f"domain {domain.name!r} has no source (a folder, glob or 'demo:<name>')")
    src = os.fspath(domain.source)
    if src.startswith("demo:"):
        if src[5:] not in DEMO_DOMAINS:
            raise StudyError(where, f"unknown demo domain {src[5:]!r}; known: {', '.join(DEMO_DOMAINS)}")
        return
    p = Path(src).expanduser()
    if not (p.is_dir() or p.is_file() or glob.glob(str(p), recursive=True)):
        raise StudyError(where, f"no data found for domain {domain.name!r} at {src!r}")
    try:
        user_files(src)
    except ValueError as exc:
        raise StudyError(where, f"domain {domain.name!r}: {str(exc).removeprefix('source: ')}") from None
