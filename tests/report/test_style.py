"""Shared plot style: units in labels, stable colours, PNGs and data URIs."""

from __future__ import annotations

import base64

from mixsearch.report import style


def test_axis_labels_carry_units():
    assert style.axis_label("cumulative cost", style.FLOPS) == "cumulative cost (FLOPs)"
    assert style.axis_label("domain") == "domain"
    fig, ax = style.new_figure()
    style.label_axes(ax, "tokens seen", "loss", style.TOKENS, style.NATS, title="t")
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("tokens seen (tokens)", "loss (nats/token)", "t")


def test_engineering_notation():
    assert style.engineering(6.4e12) == "6.4T"
    assert style.engineering(2.5e9) == "2.5G"
    assert style.engineering(0) == "0"
    assert style.engineering(float("nan")) == "–"
    assert style.engineering(1.5e30) == "1.5e+30"


def test_palette_is_stable_and_distinct():
    a = style.palette(["x", "y", "z"])
    assert a == style.palette(["x", "y", "z"]) and len(set(a.values())) == 3
    many = style.palette([f"d{i}" for i in range(25)])
    assert len(set(many.values())) == 25


def test_png_round_trip_through_a_data_uri(tmp_path):
    fig = style.note_figure("nothing here")
    path = style.save_png(fig, tmp_path / "sub" / "n.png")
    uri = style.png_data_uri(path)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == path.read_bytes()
