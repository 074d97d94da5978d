"""The documentation tells the truth: install lines that work without PyPI, and a design page
in the repository for every citation the code makes."""

from __future__ import annotations

import re

from helpers import REPO

README = (REPO / "README.md").read_text()
DESIGN = REPO / "docs" / "design.md"


def test_no_install_line_assumes_pypi():
    # The package is not on PyPI: every pip install names a path, a wheel, a git URL or a
    # dependency, never the bare project name.
    lines = [line for line in README.splitlines() if "does not work" not in line]
    for command in re.findall(r"pip install ([^`\n]*)", "\n".join(lines)):
        target = command.strip().strip("'\"")
        assert not re.match(r"classweights(\[[^]]*\])?(\s*$)", target), command
    assert "is not on PyPI" in README


def test_every_design_citation_names_a_section_of_docs_design():
    sections = set(re.findall(r"(?m)^## (.+)$", DESIGN.read_text()))
    cited = []
    for path in [*REPO.glob("classweights/*.py"), REPO / "README.md"]:
        text = path.read_text()
        assert "DESIGN.md" not in text, path
        cited += re.findall(r'docs/design\.md,\s+"([^"]+)"', text)
    assert cited
    for section in cited:
        assert section in sections, section
