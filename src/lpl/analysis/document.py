"""A report as a list of blocks, rendered to Markdown (figures linked) or to one self-contained HTML
page (figures embedded as base64 PNG data URIs, inline CSS, no external resources); a table also to CSV.

Text may use ``**bold**`` and ```code``` and nothing else."""

from __future__ import annotations

import base64
import csv
import html
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Column:
    """A table column: its CSV name ``key``, the ``header`` shown (default: the key), how numbers are shown
    (a format spec, or ``pct`` for a fraction in %), what an empty cell shows, and whether the column is shown
    and whether it goes into the CSV."""

    key: str
    header: str = ""
    fmt: str = ".3f"
    show: bool = True
    csv: bool = True
    missing: str = ""

    def cell(self, value: Any) -> str:
        if value is None or isinstance(value, str):
            return self.missing if value is None else value
        return f"{100 * value:.1f}" if self.fmt == "pct" else format(value, self.fmt)


@dataclass(frozen=True)
class Table:
    """Rows of values by column key (missing: empty). Markdown and HTML show the ``show`` columns formatted,
    numbers right-aligned; the CSV has the ``csv`` columns' raw values (``to_csv``)."""

    columns: tuple[Column, ...]
    rows: tuple[Mapping[str, Any], ...]

    def shown(self) -> tuple[list[str], list[list[str]], list[bool]]:
        """Headers, formatted cells and which columns are numeric, of the shown columns."""
        columns = [c for c in self.columns if c.show]
        numeric = [any(isinstance(r.get(c.key), int | float) for r in self.rows) for c in columns]
        return [c.header or c.key for c in columns], [[c.cell(r.get(c.key)) for c in columns] for r in self.rows], \
            numeric


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str


Block = Heading | Paragraph | Bullets | Table | Figure

CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;line-height:1.45;color:#222}h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}th,td{border:1px solid #ccc;padding:.3em .6em}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:.9em;color:#555}
code{background:#f3f3f3;padding:0 .2em}li{margin:.2em 0}"""


def _inline_html(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def to_markdown(blocks: Sequence[Block]) -> str:
    """Markdown with figures linked by file name (they sit next to the report)."""
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            headers, rows, numeric = block.shown()
            rule = "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
            out.append("\n".join([_markdown_row(headers), rule, *map(_markdown_row, rows)]))
        else:
            out.append(f"![{block.caption}]({block.path.name})\n\n*{block.caption}*")
    return "\n\n".join(out) + "\n"


def to_html(blocks: Sequence[Block], title: str) -> str:
    """One HTML page with every figure embedded; it loads nothing from anywhere."""
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{_inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            out.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            headers, rows, numeric = block.shown()
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in headers)
            body = "".join("<tr>" + "".join(f'<td{" class=n" if n else ""}>{_inline_html(c)}</td>'
                                            for c, n in zip(row, numeric)) + "</tr>" for row in rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        else:
            png = base64.b64encode(block.path.read_bytes()).decode("ascii")
            out.append(f'<figure><img src="data:image/png;base64,{png}" alt="{html.escape(block.caption)}">'
                       f"<figcaption>{_inline_html(block.caption)}</figcaption></figure>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")


def to_csv(table: Table) -> str:
    """The ``csv`` columns of ``table``, raw values (fractions stay fractions), a header row of column keys."""
    columns = [c for c in table.columns if c.csv]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([c.key for c in columns])
    writer.writerows([row.get(c.key, "") for c in columns] for row in table.rows)
    return buffer.getvalue()
