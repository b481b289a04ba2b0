"""Keep the guide's code blocks equal to the code that is tested.

A chapter marks a block with ``<!-- include PATH -->`` (the whole file) or
``<!-- include PATH diff=OLD -->`` (the diff from OLD to PATH, the change a step applies),
closed by ``<!-- end include -->``. ``python -m migration_guide.render`` rewrites every block;
``tests/migration_guide/test_docs.py`` fails when a chapter drifted from its code.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "migration_guide"
_BLOCK = re.compile(r"(<!-- include (\S+)(?: diff=(\S+))? -->\n)(.*?)(<!-- end include -->)", re.S)


def _code(path: str, old: str | None) -> str:
    new_text = (ROOT / path).read_text()
    if old is None:
        lang = "python" if path.endswith(".py") else ""
        return f"```{lang}\n{new_text.rstrip()}\n```\n"
    old_text = (ROOT / old).read_text()
    diff = difflib.unified_diff(old_text.splitlines(), new_text.splitlines(), old, path, lineterm="", n=2)
    return "```diff\n" + "\n".join(diff) + "\n```\n"


def render(text: str) -> str:
    return _BLOCK.sub(lambda m: m.group(1) + _code(m.group(2), m.group(3)) + m.group(5), text)


def chapters() -> list[Path]:
    return sorted(GUIDE.glob("*.md"))


def main() -> int:
    for chapter in chapters():
        text = chapter.read_text()
        rendered = render(text)
        if rendered != text:
            chapter.write_text(rendered)
            print(f"rendered {chapter.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
