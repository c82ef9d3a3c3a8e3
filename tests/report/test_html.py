"""The HTML page: escaping, tables and embedded figures."""

from __future__ import annotations

import math
from pathlib import Path

from mixsearch.report import html, style
from mixsearch.report.gather import FigureBlock


def test_cells_are_escaped_and_formatted():
    out = html.table(["name", "value"], [["<script>alert(1)</script>", 0.123456789], ["x", math.nan], ["y", None]])
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "0.1235" in out and out.count("–") == 2


def test_raw_columns_are_kept():
    out = html.table(["a", "bar"], [["x", '<span class="bar"></span>']], raw_cols=(1,))
    assert '<span class="bar"></span>' in out


def test_figure_block_embeds_its_png_and_escapes_its_caption(tmp_path: Path):
    png = style.save_png(style.note_figure("n"), tmp_path / "f.png")
    block = FigureBlock("f", "Title & more", "caption <b>", png)
    out = html.figure_html(block)
    assert 'src="data:image/png;base64,' in out and "Title &amp; more" in out and "caption &lt;b&gt;" in out
    empty = html.figure_html(FigureBlock("f", "T", "c", png, note="nothing to draw", empty=True))
    assert "data:image" not in empty and "nothing to draw" in empty


def test_page_is_a_complete_document():
    doc = html.page("a <title>", "sub", ["<p>body</p>"])
    assert doc.startswith("<!DOCTYPE html>") and doc.rstrip().endswith("</html>")
    assert "<title>a &lt;title&gt;</title>" in doc and "<p>body</p>" in doc
