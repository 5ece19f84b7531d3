"""The report as a document: sections of blocks (text, tables, figures, side-by-side pairs), rendered by a
jinja2 template with autoescaping.

Everything that comes from data reaches the page escaped: text through the template's autoescaping, tables
through ``DataFrame.to_html(escape=True)``, figures as plotly JSON (which escapes ``<``). C0 control characters
are dropped first, since HTML forbids them. Only the HTML that pandas and plotly produce is marked safe.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import pandas as pd
from markupsafe import Markup

# Printable width of A4 with 12 mm margins (186 mm at 96 dpi); a pair's column is a little under half.
PAGE_WIDTH_PX = 680
PAIR_WIDTH_PX = 330

# C0 control characters other than tab/newline (NUL included) are not text a reader can see; HTML forbids them.
_CONTROL = {c: None for c in range(32) if c not in (9, 10, 13)} | {127: None}


def printable(value: Any) -> Any:
    """``value`` without control characters (non-strings unchanged)."""
    return value.translate(_CONTROL) if isinstance(value, str) else value


def slug(text: str) -> str:
    """An HTML id for a heading."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


@dataclass
class Paragraph:
    text: str
    css: str = ""
    kind: str = "paragraph"


@dataclass
class Missing:
    """An analysis whose artifacts are absent, and the command that creates them."""

    what: str
    command: str
    kind: str = "missing"


@dataclass
class Table:
    html: Markup
    caption: str
    shown: int
    total: int
    link: Optional[str]
    kind: str = "table"


@dataclass
class Figure:
    html: Markup
    caption: str
    kind: str = "figure"


@dataclass
class Claims:
    """The claims table: one row per claim with its verdict, scores and evidence."""

    rows: list[dict[str, Any]]
    kind: str = "claims"


@dataclass
class Pair:
    """Two columns side by side (a two-model comparison): titles and the blocks under each."""

    titles: tuple[str, str]
    left: list[Any]
    right: list[Any]
    kind: str = "pair"


@dataclass
class Highlight:
    """Tokens shaded by score, one line per method: readable in print where a 60-column heatmap is not.

    ``rows`` holds (method, [(token, shade)]) with shade in [-1, 1] (the score over the method's max |score|).
    """

    rows: list[tuple[str, list[tuple[str, float]]]]
    caption: str
    kind: str = "highlight"


def shade_style(shade: float) -> str:
    """Inline CSS for one token: red for positive, blue for negative, opacity = |shade| (numbers only)."""
    value = max(-1.0, min(1.0, float(shade)))
    rgb = "214,39,40" if value >= 0 else "31,119,180"
    return f"background: rgba({rgb},{abs(value) * 0.85:.2f})"


Block = Union[Paragraph, Missing, Table, Figure, Claims, Pair, Highlight]


@dataclass
class Section:
    """A titled part of the report; ``subsections`` appear in the table of contents under it."""

    title: str
    blocks: list[Block] = field(default_factory=list)
    subsections: list["Section"] = field(default_factory=list)
    intro: str = ""

    @property
    def id(self) -> str:
        return slug(self.title)


class Document:
    """Builds blocks and keeps every table in full for the data folder (the page shows the informative rows).

    Args:
        data_dir_name: the data folder's name, for links from cut tables to their full CSV.
    """

    def __init__(self, data_dir_name: str) -> None:
        self.data_dir_name = data_dir_name
        self.tables: dict[str, pd.DataFrame] = {}
        self.n_figures = 0

    @staticmethod
    def safe(name: str) -> str:
        """``name`` as a file name of the data folder."""
        return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)

    def keep(self, name: str, frame: pd.DataFrame) -> str:
        """Record ``frame`` for the data folder under a file-safe ``name``; returns that name."""
        safe = self.safe(name)
        self.tables[safe] = frame
        return safe

    def table(self, frame: pd.DataFrame, caption: str, name: Optional[str] = None, max_rows: int = 15,
              columns: Optional[Sequence[str]] = None) -> Table:
        """A table block: the first ``max_rows`` rows (sort ``frame`` so they are the informative ones), with a
        link to the full table in the data folder when ``name`` is given.

        Column names are shown with spaces for underscores, so headers wrap between words.
        """
        link = None
        if name is not None:
            safe = self.keep(name, frame)
            link = f"{self.data_dir_name}/{safe}.csv"
        shown = frame[list(columns)] if columns is not None else frame
        shown = shown.head(max_rows).copy()
        for column in shown.columns:
            if not pd.api.types.is_numeric_dtype(shown[column]):
                shown[column] = shown[column].map(printable)
        shown.columns = [printable(str(c)).replace("_", " ") for c in shown.columns]
        markup = shown.to_html(escape=True, index=False, float_format=lambda v: f"{v:.4g}", border=0,
                               classes="data", na_rep="–")
        return Table(Markup(markup), caption, min(max_rows, len(frame)), len(frame), link)

    def figure(self, fig: Any, caption: str, width: int = PAGE_WIDTH_PX) -> Figure:
        """A figure block, sized for print (fixed width, no toolbar), with the caption that says how to read it."""
        fig.update_layout(width=width, autosize=False, font=dict(size=11))
        self.n_figures += 1
        markup = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{self.n_figures}",
                             config={"displayModeBar": False, "displaylogo": False, "responsive": False})
        return Figure(Markup(markup), caption)


def render(sections: Sequence[Section], title: str, subtitle: str, notes: Sequence[str]) -> str:
    """The whole page: plotly.js once in the head, a linked table of contents, then the sections."""
    import jinja2
    from plotly.offline import get_plotlyjs

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                                     autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters["printable"] = printable
    environment.filters["shade"] = shade_style
    template = environment.get_template("report.html.j2")
    css = (Path(__file__).parent / "templates" / "report.css").read_text(encoding="utf-8")
    return template.render(title=printable(title), subtitle=subtitle, notes=list(notes), sections=list(sections),
                           css=Markup(css), plotly_js=Markup(get_plotlyjs()))
