"""The ``command`` world's options, checked, and the placeholders that turn them into a trial's
command line and environment.

``{name}`` in the command, in ``env`` values and in ``metrics`` is a placeholder;
``{{name}}`` is a literal ``{name}``; ``${NAME}`` (a shell variable) and braces around
anything but a bare name (JSON) pass through as written. An unknown ``{name}`` is an
error: it is almost always a typo.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from mixsearch.evaluate.base import check_options
from mixsearch.study import Rung

OPTIONS = ("command", "shell", "cwd", "env", "timeout", "metrics", "inputs", "output_dir", "retry_exit_codes")
# Options that say where a run goes or how long it may take, not what it learns: they stay
# out of the snapshot id, so raising a timeout reruns a trial in the same folder.
RUN_OPTIONS = ("timeout", "output_dir", "retry_exit_codes")
PLACEHOLDERS = ("candidate", "out", "metrics", "seed", "N", "D", "rung", "study", "attempt")
# The metrics file's name must not change between attempts, nor depend on itself.
METRICS_PLACEHOLDERS = ("out", "seed", "N", "D", "rung", "study")
ENV_PREFIX = "MIXSEARCH_"
DEFAULT_METRICS = "{out}/metrics.json"
DEFAULT_RETRY_EXIT_CODES = (75,)  # EX_TEMPFAIL (sysexits.h): "temporary failure, try again"

_BRACES = re.compile(r"\{\{(?P<escaped>[A-Za-z_]\w*)\}\}|\$\{[A-Za-z_]\w*\}|\{(?P<name>[A-Za-z_]\w*)\}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class CommandOptions:
    """A study's ``evaluator.options`` for the command world, checked, paths made absolute.

    Attributes:
        raw: The options as the study gives them (what the snapshot id hashes).
        command: Argument templates; with ``shell``, one script template.
        shell: Run the command through ``/bin/sh -c``.
        cwd: The command's working directory (default: the current one).
        env: Extra environment variables (templates).
        timeout: Seconds a run may take; None for no limit.
        metrics: Where the command writes its results (template; relative to ``{out}``).
        inputs: Files and folders whose content is part of the snapshot id.
        output_dir: The folder of the trial folders.
        retry_exit_codes: Exit statuses that mean "try again".
    """

    raw: Mapping[str, Any]
    command: tuple[str, ...]
    shell: bool
    cwd: Path
    env: Mapping[str, str]
    timeout: float | None
    metrics: str
    inputs: tuple[Path, ...]
    output_dir: Path
    retry_exit_codes: frozenset[int]

    @classmethod
    def parse(cls, options: Mapping[str, Any], study: str, rungs: Sequence[Rung] = ()) -> "CommandOptions":
        """Check the options; relative paths resolve against the current directory (``inputs``
        against ``cwd``, as the command reads them).

        Args:
            options: The study's ``evaluator.options``.
            study: The study name (the default ``output_dir`` is ``runs/<study>/trials``).
            rungs: The runnable rungs, to check that ``{N}`` and ``{D}`` have values.

        Raises:
            ValueError: one line naming ``evaluator.options.<key>``.
        """
        opts = dict(options)
        check_options(opts, OPTIONS, "command")
        if "command" not in opts:
            raise ValueError("evaluator.options.command: required: the training command, as a list of arguments or one string")
        shell = opts.get("shell", False)
        if not isinstance(shell, bool):
            raise ValueError(f"evaluator.options.shell: must be true or false, got {shell!r}")
        cwd = _folder(opts.get("cwd"))
        parsed = cls(
            raw=opts,
            command=_command(opts["command"], shell),
            shell=shell,
            cwd=cwd,
            env=_env(opts.get("env", {})),
            timeout=_timeout(opts.get("timeout")),
            metrics=_path(opts.get("metrics", DEFAULT_METRICS), "metrics"),
            inputs=_inputs(opts.get("inputs", ()), cwd),
            output_dir=absolute(_path(opts.get("output_dir", Path("runs") / study / "trials"), "output_dir"), Path.cwd()),
            retry_exit_codes=_exit_codes(opts.get("retry_exit_codes", DEFAULT_RETRY_EXIT_CODES)),
        )
        parsed._check_placeholders(rungs)
        return parsed

    def argv(self, values: Mapping[str, str]) -> list[str]:
        """The command line of a trial with placeholder ``values``."""
        if self.shell:
            # Values are quoted: a folder with a space in it stays one word.
            return ["/bin/sh", "-c", substitute(self.command[0], values, quote=True)]
        return [substitute(arg, values) for arg in self.command]

    def environ(self, values: Mapping[str, str]) -> dict[str, str]:
        """This process's environment, plus ``env`` and a ``MIXSEARCH_<NAME>`` per placeholder."""
        env = dict(os.environ)
        # Python trainers then write their log line by line: a killed run's last line is kept.
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update({k: substitute(v, values) for k, v in self.env.items()})
        env.update({f"{ENV_PREFIX}{k.upper()}": v for k, v in values.items() if v != ""})
        return env

    def _check_placeholders(self, rungs: Sequence[Rung]) -> None:
        templates = [("evaluator.options.command", arg, PLACEHOLDERS) for arg in self.command]
        templates += [(f"evaluator.options.env.{k}", v, PLACEHOLDERS) for k, v in self.env.items()]
        templates.append(("evaluator.options.metrics", self.metrics, METRICS_PLACEHOLDERS))
        for field, text, known in templates:
            for name in placeholder_names(text):
                if name not in known:
                    raise ValueError(f"{field}: unknown placeholder {{{name}}}; known: {', '.join('{' + k + '}' for k in known)} (write {{{{{name}}}}} for a literal {{{name}}})")
                attr = {"N": "n_params", "D": "tokens"}.get(name)
                missing = [r.name for r in rungs if attr and getattr(r, attr) is None]
                if missing:
                    raise ValueError(f"{field}: uses {{{name}}} but rung {missing[0]!r} has no {attr}")


def placeholder_names(text: str) -> list[str]:
    """The placeholder names in ``text`` (``{out}``; not ``{{out}}`` nor ``${OUT}``)."""
    return [m["name"] for m in _BRACES.finditer(text) if m["name"]]


def substitute(text: str, values: Mapping[str, str], quote: bool = False) -> str:
    """``text`` with each ``{name}`` replaced by ``values[name]`` (shell-quoted when ``quote``)."""

    def one(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "{" + m["escaped"] + "}"
        if m["name"] is None:
            return m.group(0)
        value = values[m["name"]]
        return shlex.quote(value) if quote else value

    return _BRACES.sub(one, text)


def absolute(path: str | Path, base: Path) -> Path:
    """``path`` (``~`` expanded), relative ones under ``base``."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def _command(value: Any, shell: bool) -> tuple[str, ...]:
    field = "evaluator.options.command"
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{field}: is empty")
        if shell:
            return (value,)
        try:
            return tuple(shlex.split(value))
        except ValueError as exc:
            raise ValueError(f"{field}: cannot split {value!r} into arguments: {exc}") from None
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{field}: must be a list of arguments or one string, got {type(value).__name__}")
    if shell:
        raise ValueError(f"{field}: with shell: true, give the command as one string")
    if not value:
        raise ValueError(f"{field}: is empty")
    args = [os.fspath(item) if isinstance(item, os.PathLike) else item for item in value]
    for i, item in enumerate(args):
        if not isinstance(item, str) or (i == 0 and not item):
            raise ValueError(f"{field}[{i}]: must be a {'non-empty ' if i == 0 else ''}string, got {item!r}")
    return tuple(args)


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"evaluator.options.timeout: must be a positive number of seconds, got {value!r}")
    return float(value)


def _env(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError(f"evaluator.options.env: must be a mapping of variable names to strings, got {type(value).__name__}")
    for key, v in value.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise ValueError(f"evaluator.options.env: {key!r} is not a variable name")
        if key.startswith(ENV_PREFIX):
            raise ValueError(f"evaluator.options.env.{key}: mixsearch sets the {ENV_PREFIX}* variables for each trial")
        if not isinstance(v, str):
            raise ValueError(f"evaluator.options.env.{key}: must be a string, got {v!r}")
    return dict(value)


def _path(value: Any, key: str) -> str:
    value = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(value, str) or not value:
        raise ValueError(f"evaluator.options.{key}: must be a path, got {value!r}")
    return value


def _folder(value: Any) -> Path:
    if value is None:
        return Path.cwd()
    path = absolute(_path(value, "cwd"), Path.cwd())
    if not path.is_dir():
        raise ValueError(f"evaluator.options.cwd: no such folder: {str(value)!r}")
    return path


def _inputs(value: Any, cwd: Path) -> tuple[Path, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"evaluator.options.inputs: must be a list of files or folders, got {type(value).__name__}")
    paths = []
    for i, item in enumerate(value):
        path = absolute(_path(item, f"inputs[{i}]"), cwd)
        if not path.exists():
            raise ValueError(f"evaluator.options.inputs[{i}]: no such file or folder: {str(item)!r} (relative paths are read from {cwd})")
        paths.append(path)
    return tuple(paths)


def _exit_codes(value: Any) -> frozenset[int]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 255 for c in value):
        raise ValueError(f"evaluator.options.retry_exit_codes: must be a list of exit statuses from 1 to 255, got {value!r}")
    return frozenset(value)
