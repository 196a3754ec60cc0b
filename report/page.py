"""The report's HTML: one self-contained page (inline CSS, no script, no external resource),
well-formed XHTML-style markup (void elements closed, every text escaped with
:func:`html.escape`) so that an XML parser reads it, and relative links only.

Pure: a tree of small blocks in, a string out.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

from picks.report.figures import COLOURS


@dataclass
class Text:
    """A paragraph; ``kind`` = "" (plain), "note" (grey) or "warning"."""

    text: str
    kind: str = ""


@dataclass
class Table:
    columns: Sequence[str]
    rows: Sequence[Sequence[object]]
    caption: str = ""


@dataclass
class Image:
    """An image; with ``thumb``, the thumbnail is shown and links to the full image."""

    src: str
    alt: str
    caption: str = ""
    thumb: str | None = None


@dataclass
class Images:
    """Images side by side (e.g. the slabs of a tomogram)."""

    images: Sequence[Image]


@dataclass
class Section:
    id: str
    title: str
    blocks: list = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)


@dataclass
class Page:
    title: str
    header: list = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)


_CSS = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1250px; color: #222;
       line-height: 1.35; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.4em 0 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
caption { text-align: left; font-size: 0.9em; color: #555; padding-bottom: 2px; }
figure { display: inline-block; margin: 0 0.8em 0.8em 0; vertical-align: top; }
figcaption { font-size: 0.8em; color: #555; max-width: 420px; }
img { border: 1px solid #ddd; max-width: 100%; }
p.note { color: #666; font-size: 0.9em; } p.warning { color: #a04000; font-size: 0.9em; }
nav { font-size: 0.9em; } nav ul { margin: 0.2em 0; }
.key span { display: inline-block; width: 1em; height: 1em; border-radius: 50%;
            border: 2px solid; margin: 0 0.3em 0 0.8em; vertical-align: middle; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def _block(block: object) -> str:
    if isinstance(block, Text):
        cls = f' class="{_e(block.kind)}"' if block.kind else ""
        return f"<p{cls}>{_e(block.text)}</p>"
    if isinstance(block, Table):
        out = ["<table>"]
        if block.caption:
            out.append(f"<caption>{_e(block.caption)}</caption>")
        out.append("<tr>" + "".join(f"<th>{_e(c)}</th>" for c in block.columns) + "</tr>")
        for row in block.rows:
            out.append("<tr>" + "".join(f"<td>{_e(_cell(v))}</td>" for v in row) + "</tr>")
        out.append("</table>")
        return "\n".join(out)
    if isinstance(block, Image):
        shown = block.thumb or block.src
        img = f'<img src="{_e(shown)}" alt="{_e(block.alt)}"/>'
        if block.thumb:
            img = f'<a href="{_e(block.src)}">{img}</a>'
        caption = f"<figcaption>{_e(block.caption)}</figcaption>" if block.caption else ""
        return f"<figure>{img}{caption}</figure>"
    if isinstance(block, Images):
        return '<div class="images">' + "".join(_block(i) for i in block.images) + "</div>"
    raise TypeError(f"unknown block {type(block).__name__}")


def _section(section: Section, level: int) -> str:
    out = [f'<section id="{_e(section.id)}">', f"<h{level}>{_e(section.title)}</h{level}>"]
    out.extend(_block(b) for b in section.blocks)
    out.extend(_section(s, min(level + 1, 6)) for s in section.sections)
    out.append("</section>")
    return "\n".join(out)


def decision_key() -> str:
    """The colour key of the circles (the same colours as the figures)."""
    items = "".join(
        f'<span style="border-color: {colour}"></span>{_e(name)}'
        for name, colour in COLOURS.items()
    )
    return f'<p class="key">{items}</p>'


def render(page: Page) -> str:
    """The whole document (UTF-8 text)."""
    nav = ["<nav><ul>"]
    for s in page.sections:
        nav.append(f'<li><a href="#{_e(s.id)}">{_e(s.title)}</a></li>')
    nav.append("</ul></nav>")
    body = [
        f"<h1>{_e(page.title)}</h1>",
        *(_block(b) for b in page.header),
        decision_key(),
        "\n".join(nav),
        *(_section(s, 2) for s in page.sections),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html xmlns="http://www.w3.org/1999/xhtml" lang="en">\n'
        "<head>\n"
        '<meta charset="utf-8"/>\n'
        f"<title>{_e(page.title)}</title>\n"
        f"<style>{_CSS}</style>\n"
        "</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
