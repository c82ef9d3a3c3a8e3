"""The Rich progress display shows trial states, budget spent, best so far and the last event."""

from __future__ import annotations

import io

from rich.console import Console

from mixsearch.orchestrator import Status
from mixsearch.progress import RichProgress, format_cost, status_line


def test_status_line_names_every_count_and_the_budget():
    s = Status({"pending": 2, "running": 3, "done": 5, "failed": 1}, 2.4e12, 1e13, 20, 12.0, (3.4567, "s"), "abc done")
    assert status_line(s) == "done 5 · running 3 · pending 2 · failed 1 · trials 6/20 · cost 2.4T/10T · best 3.4567 @ s"
    s = Status({"pending": 0, "running": 1, "done": 0, "failed": 0}, 0.0, None, None, 1.0)
    assert status_line(s) == "done 0 · running 1 · pending 0 · failed 0 · cost 0 · best -"


def test_format_cost():
    assert format_cost(6.4e12) == "6.4T" and format_cost(950.0) == "950" and format_cost(0) == "0"


def test_rich_progress_renders_the_last_status_and_event():
    buf = io.StringIO()
    console = Console(file=buf, width=160, force_terminal=False)
    with RichProgress("quickstart", console) as progress:
        progress.update(Status({"pending": 4, "running": 2, "done": 0, "failed": 0}, 0.0, None, 14, 1.0))
        progress.update(Status({"pending": 0, "running": 0, "done": 6, "failed": 1}, 3.0e12, 6.0e12, 14, 9.0, (3.21, "xs"), "9f3c done: 3.21"))
    text = buf.getvalue()
    assert "quickstart" in text and "done 6" in text and "failed 1" in text and "cost 3T/6T" in text
    assert "best 3.2100 @ xs" in text and "last: 9f3c done: 3.21" in text
    assert "50%" in text  # cost binds first: 3T of 6T, while 7 of 14 trials is also 50 %


def test_stage_lines_outside_a_terminal_only_for_stages_that_last(monkeypatch, capsys):
    import time

    import pytest

    from mixsearch import progress

    # Wide margins: on a loaded machine a thread may wait a few hundred ms for a core.
    monkeypatch.setattr(progress, "STAGE_LINE_DELAY", 0.6)
    console = Console(file=io.StringIO(), force_terminal=False)
    with progress.stages(console) as say:
        say("quick stage")
        say("slow stage")
        time.sleep(1.5)
        say("last quick stage")
    time.sleep(0.8)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].endswith("slow stage")
    assert progress.is_stage_line(err[0])
    assert progress.is_stage_line(progress.stage_line(1234.56, "fitting"))
    # Messages, even ones that start with a bracket, are not stage lines.
    assert not progress.is_stage_line("error: runs/x.json: File too large")
    assert not progress.is_stage_line("[warning] 1.0 s late")
    # A command that fails at once leaves its error line alone.
    with pytest.raises(ValueError):
        with progress.stages(console) as say:
            say("checking")
            raise ValueError("bad input")
    time.sleep(0.8)
    assert capsys.readouterr().err == ""


def test_outside_a_terminal_progress_is_whole_lines_one_per_finished_trial(capsys):
    from mixsearch.progress import LineProgress, study_progress

    console = Console(file=io.StringIO(), force_terminal=False)
    progress = study_progress("a-study-with-a-long-name", console)
    assert isinstance(progress, LineProgress)
    with progress:
        for done in (0, 1, 1, 2):
            progress.update(Status({"pending": 1, "running": 1, "done": done, "failed": 0}, 1.5e12 * done, 1e13, 20, 3.0 * done, (3.4567, "xs-long"), f"t{done} done: 3.4567"))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3  # the repeated count printed nothing
    assert lines[-1] == "a-study-with-a-long-name: done 2 · running 1 · pending 1 · failed 0 · trials 2/20 · cost 3T/10T · best 3.4567 @ xs-long · last: t2 done: 3.4567"
