"""--format html: one self-contained page, read back with html.parser as a browser would."""

from __future__ import annotations

import math
from html.parser import HTMLParser

import pytest

from classweights.weights import METHODS
from helpers import MASK_A, MASK_B, run, save_mask


class Page(HTMLParser):
    """The parts of a page the tests look at: tags, attributes, table cells, text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.rows: dict[str, list[list[str]]] = {}
        self.text: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "table":
            self._table = attributes.get("class")
            self.rows[self._table] = []
        elif tag == "tr" and self._table:
            self.rows[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.rows[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture
def page(tmp_path):
    save_mask(tmp_path / "m" / "a.png", MASK_A)
    save_mask(tmp_path / "m" / "b.png", MASK_B)
    save_mask(tmp_path / "m" / "c.png", [[0, 0], [0, 255]])
    args = ["--format", "html", "--num-classes", "4", "--ignore-index", "255"]
    result = run("scan", tmp_path / "m", *args)
    assert result.exit_code == 0, result.stderr
    return Page(result.stdout), result.stdout


def test_the_page_is_self_contained(page):
    parsed, text = page
    assert text.startswith("<!DOCTYPE html>")
    assert not [t for t, a in parsed.tags if t in ("script", "link", "img", "iframe")]
    assert not [a for _, a in parsed.tags if any(v and "://" in v for v in a.values())]
    assert "http" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_classes_table_has_counts_images_and_every_method(page):
    parsed, _ = page
    header, *rows = parsed.rows["classes"]
    assert header[:4] == ["id", "name", "pixels", "images"] and header[4].startswith("share")
    assert header[5:] == list(METHODS)
    # pixels [23, 8, 2, 0] in [3, 2, 1, 0] images; class 3 has none (the missing policy).
    assert [r[:4] for r in rows] == [
        ["0", "", "23", "3"], ["1", "", "8", "2"], ["2", "", "2", "1"], ["3", "", "0", "0"]
    ]
    assert all(len(r) == len(header) and float(r[-1]) == 1 for r in rows[:3])  # uniform


def test_shares_are_a_log_scale_bar_chart(tmp_path):
    save_mask(tmp_path / "a.png", [[0] * 100] * 99 + [[0] * 99 + [1]])  # 9,999 and 1 pixel
    parsed = Page(run("scan", tmp_path, "--format", "html", "-q").stdout)
    bars = [a for t, a in parsed.tags if t == "rect" and a.get("class") == "bar"]
    widths = [float(a["width"]) for a in bars]
    # share 0.9999 is nearly the whole axis; 1e-4 is 2 of 6 decades: a third of it.
    assert widths[0] == pytest.approx(240 * (1 + math.log10(0.9999) / 6), abs=0.1)
    assert widths[1] == pytest.approx(240 / 3, abs=0.1)


def test_settings_and_warnings(tmp_path):
    save_mask(tmp_path / "a.png", [[0, 1], [2, 2]])  # class 3 has no pixels: a warning
    options = ("--num-classes", "4", "--format", "html", "--method", "enet", "-q")
    result = run("scan", tmp_path, *options)
    parsed = Page(result.stdout)
    settings = dict(parsed.rows["settings"])
    assert settings["method"] == "enet" and settings["ignore_index"] == "[]"
    assert settings["reduce_zero_label"] == "false"
    assert settings["masks"] == "1"
    text = "".join(parsed.text)
    assert "classes with no pixels: [3] (weight: zero)" in text


def test_weights_command_writes_the_page_too(tmp_path):
    save_mask(tmp_path / "m" / "a.png", MASK_A)
    run("scan", tmp_path / "m", "-q", "-o", tmp_path / "r.json")
    result = run("weights", tmp_path / "r.json", "--format", "html", "--method", "sqrt", "-q")
    parsed = Page(result.stdout)
    header, *rows = parsed.rows["classes"]
    chosen = header.index("sqrt")
    # sqrt: 1 / sqrt(p): p = 12/16 and 4/16
    assert float(rows[0][chosen]) == pytest.approx(1 / math.sqrt(0.75), rel=1e-3)
    assert float(rows[1][chosen]) == pytest.approx(2, rel=1e-3)
