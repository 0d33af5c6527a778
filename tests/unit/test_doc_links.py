"""Relative links between the documents resolve: the file exists and so does the anchor.

Covers the README, ``docs/*.md`` and the results folders they link into (``bench/results/``,
``chaos/results/``). Anchors follow GitHub's rule for headings (lower case, punctuation
dropped, spaces as dashes, ``-1``, ``-2`` … for repeats) or are explicit ``<a id=…>`` tags.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
EXPLICIT_ANCHOR = re.compile(r"""<a\s+(?:id|name)=["']([^"']+)["']""")


def documents() -> list[Path]:
    """Every Markdown file a reader reaches from the README."""
    found = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for folder in ("bench/results", "chaos/results"):
        found += sorted((ROOT / folder).rglob("*.md"))
    return found


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code spans."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"<[^>]+>", "", heading)  # inline HTML
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links keep their text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a link into ``path`` may use."""
    text = path.read_text(encoding="utf-8")
    found: set[str] = set(EXPLICIT_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", text)):
        slug = github_slug(heading)
        n = seen.get(slug, 0)
        found.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return found


def broken_links(path: Path) -> list[str]:
    """``target: reason`` for each relative link of ``path`` that does not resolve."""
    problems = []
    for target in LINK.findall(_prose(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{target}: no heading or anchor #{anchor} in {dest.name}")
    return problems


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    assert not broken_links(path), broken_links(path)


def test_the_check_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## Same name\n\n## Same name\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Title\n\n"
        "[ok](other.md#same-name) [ok](other.md#same-name-1) [ok](#title) [web](https://x.y/z)\n"
        "`[code](nowhere.md)`\n\n```\n[fenced](nowhere.md)\n```\n"
        "[gone](missing.md) [bad anchor](other.md#nothing) ![img](pic.png) [self](#nope)\n"
    )
    assert broken_links(doc) == [
        "missing.md: no such file",
        "other.md#nothing: no heading or anchor #nothing in other.md",
        "pic.png: no such file",
        "#nope: no heading or anchor #nope in doc.md",
    ]


def test_github_slugs() -> None:
    assert github_slug("OtpLatencyBudgetBurnFast / OtpLatencyBudgetBurnSlow") == (
        "otplatencybudgetburnfast--otplatencybudgetburnslow"
    )
    assert github_slug("Speed on 1,000,000 messages") == "speed-on-1000000-messages"
    assert github_slug("Run C: the wire client beside the `libraries`") == (
        "run-c-the-wire-client-beside-the-libraries"
    )
    assert github_slug("Query a message's status") == "query-a-messages-status"
