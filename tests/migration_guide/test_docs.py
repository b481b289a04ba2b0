"""The guide shows the code that is tested: every include block equals its file or diff."""

from __future__ import annotations

import pytest

from migration_guide import render


@pytest.mark.parametrize("chapter", render.chapters(), ids=lambda p: p.name)
def test_chapter_blocks_match_the_code(chapter) -> None:  # noqa: ANN001
    text = chapter.read_text()
    assert render.render(text) == text, f"{chapter.name} drifted from its code: run python -m migration_guide.render"


def test_every_step_has_a_chapter() -> None:
    names = {p.name for p in render.chapters()}
    for expected in ["README.md", "0-today.md", "1-wrap.md", "2-takeover.md", "3-workflow.md", "4-retire.md", "reference.md", "troubleshooting.md"]:
        assert expected in names
