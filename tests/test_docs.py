"""Every document the code, scripts and docs cite is in the repository (users never see
the team's private notes)."""

from __future__ import annotations

import re

from conftest import ROOT

CITED = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.md)\b")
SOURCES = ["README.md", "dev.sh", "build.py", "addon/**/*.py", "engine/**/*.py", "bench/**/*.py",
           "tests/**/*.py", "docs/**/*.md"]


def test_every_cited_document_exists():
    missing = []
    for pattern in SOURCES:
        for path in ROOT.glob(pattern):
            for name in CITED.findall(path.read_text(encoding="utf-8", errors="replace")):
                if not ((ROOT / name).exists() or (path.parent / name).exists()):
                    missing.append(f"{path.relative_to(ROOT)} cites {name}")
    assert not missing, "\n".join(missing)
