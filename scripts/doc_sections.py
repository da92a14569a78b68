"""Marked sections of the markdown files that the scripts regenerate: a block that starts with
``<!-- TAG:begin -->`` and ends with ``<!-- TAG:end -->`` replaces the block with the same markers. One
helper, so every script splices its figures the same way."""

from __future__ import annotations

from pathlib import Path


def markers(tag: str) -> tuple[str, str]:
    return f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"


def block(tag: str, body: str) -> str:
    begin, end = markers(tag)
    return f"{begin}\n{body.strip(chr(10))}\n{end}\n"


def replace_section(text: str, section: str, *, append: bool = True) -> str:
    """``text`` with the block marked like ``section`` (its first and last lines are the markers) replaced
    by ``section``; when ``text`` has no such block, ``section`` is appended (``append``) or ``text`` is
    returned unchanged."""
    lines = section.strip("\n").splitlines()
    begin, end = lines[0].strip(), lines[-1].strip()
    if not (begin.startswith("<!-- ") and begin.endswith(":begin -->") and end == begin.replace(":begin", ":end")):
        raise ValueError(f"a section starts with <!-- TAG:begin --> and ends with <!-- TAG:end -->, not {begin!r}")
    i, j = text.find(begin), text.find(end)
    if i >= 0 and j > i:
        return text[:i] + section.strip("\n") + text[j + len(end):]
    return text.rstrip("\n") + "\n\n" + section.strip("\n") + "\n" if append else text


def sections(text: str) -> list[str]:
    """Every marked block of ``text`` (markers included), in order: what a script that rewrites a whole file
    carries over from the other scripts that write into it."""
    out: list[str] = []
    pos = 0
    while (i := text.find("<!-- ", pos)) >= 0:
        line_end = text.find("-->", i)
        head = text[i:line_end + 3] if line_end >= 0 else ""
        if not head.endswith(":begin -->"):
            pos = i + 5
            continue
        end = head.replace(":begin", ":end")
        j = text.find(end, line_end)
        if j < 0:
            pos = i + 5
            continue
        out.append(text[i:j + len(end)])
        pos = j + len(end)
    return out


def carry_sections(new: str, old: str) -> str:
    """``new`` with every marked block of ``old`` put back: in place where ``new`` has the same markers, else
    appended in ``old``'s order."""
    for sec in sections(old):
        new = replace_section(new, sec)
    return new


def write_section(path: Path, section: str, *, title: str = "# Benchmarks") -> None:
    """Replace (or append) ``section`` in the markdown file ``path`` (created with ``title`` when absent)."""
    text = path.read_text() if path.is_file() else f"{title}\n\nFigures measured by the scripts in `scripts/`.\n"
    text = replace_section(text, section)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")
