"""Comments, docstrings and documents say the thing itself: none points to a
text a reader of the repository does not have (an issue by number, a task
list, the specification the project started from, its numbered properties or
requirements)."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Where the project's own text lives: every Python file, and these documents.
DOCUMENTS = ("Makefile", "README.md", "BENCHMARKS.md", "pyproject.toml")
SKIPPED_DIRECTORIES = frozenset({".venv", ".tools", ".git", "node_modules", "cdk.out"})

#: Phrases that point outside the repository, each with why it does.
OUTSIDE = {
    r"\bissues? #?\d+": "an issue by number",
    r"\bthe issue\b|\bissue's\b": "the issue being worked on",
    r"\btasks?\.md\b|\btasks? #?\d+(\.\d+)*\b": "a task list",
    r"\bthe seed\b|\bseed's\b|\bseed contract\b": "the specification the project started from",
    r"\bPropert(y|ies) \d+": "a numbered property of a specification",
    r"\bRequirements? \d+(\.\d+)*": "a numbered requirement of a specification",
}
PATTERN = re.compile("|".join(f"(?:{p})" for p in OUTSIDE), re.IGNORECASE)


def project_files() -> list[Path]:
    found = [ROOT / name for name in DOCUMENTS if (ROOT / name).exists()]
    for directory, subdirectories, names in os.walk(ROOT):
        subdirectories[:] = [d for d in subdirectories if d not in SKIPPED_DIRECTORIES]
        found += [Path(directory) / name for name in names if name.endswith(".py")]
    return sorted(path for path in found if path != Path(__file__).resolve())


def outside_references(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line that points outside the repository."""
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if PATTERN.search(line)
    ]


def test_no_source_file_or_document_points_outside_the_repository() -> None:
    files = project_files()
    assert any(path.name == "README.md" for path in files)
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line}"
        for path in files
        for number, line in outside_references(path.read_text(encoding="utf-8"))
    ]
    assert found == [], "say the thing itself instead:\n" + "\n".join(found)


def test_the_guard_finds_each_kind_of_outside_reference() -> None:
    pointing = [
        "# as issue 12 asks",
        '"""Where the issue\'s contract differs"""',
        "# see tasks.md, task 3.2",
        "the seed's contract",
        '"""Property 7: rejection when full."""',
        "# Requirement 4.1",
    ]
    saying = [
        "# a capacity raise promotes the waitlist FIFO",
        "rng = random.Random(seed)  # one seeded generator per test",
        "the service did not issue with its current key",
        "an asyncio task per request",
        '"""Property tests of the registration rules."""',
    ]
    assert [len(outside_references(text)) for text in pointing] == [1] * len(pointing)
    assert [outside_references(text) for text in saying] == [[]] * len(saying)
