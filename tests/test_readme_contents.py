"""The README's table of contents links to headings that exist, and lists every top-level section."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_contents_link_names_a_heading_and_every_section_is_listed() -> None:
    text = README.read_text()
    contents = text[text.index("**Contents:**"):text.index("\n## ")]
    links = re.findall(r"\]\(#([^)]+)\)", contents)
    headings = re.findall(r"^#{2,3} (.+)$", text, re.M)
    anchors = {anchor(heading) for heading in headings}
    assert [link for link in links if link not in anchors] == []
    sections = [anchor(h) for h in re.findall(r"^## (.+)$", text, re.M)]
    assert [section for section in sections if section not in links] == []
