"""Tables that fit the terminal they are printed in, never eliding a number or a name.

`Grid` collects a title, columns and rows (rich markup allowed) and decides when it is printed: if every
column can show its longest word at the console's width, it renders as a rich Table whose columns wrap
(`overflow="fold"`, `no_wrap=False`); otherwise it switches to a vertical layout, one block per row with
"column: value" lines. `kv` is the two-column quantity/value table. `console()` is the stdout (or stderr)
Console every view uses: the width of the terminal, or `$COLUMNS`, or 80 when printing to a pipe.
"""

from __future__ import annotations

from typing import Any, Iterable

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


def console(stderr: bool = False, **kw: Any) -> Console:
    """The Console of the CLI views (terminal width; `$COLUMNS`; 80 on a pipe).

    Args:
        stderr: print to stderr instead of stdout.
        **kw: passed to rich's Console (tests pass `width`, `file`, `force_terminal`).

    Returns:
        The Console.
    """
    return Console(stderr=stderr, **kw)


class Grid:
    """A table that renders as columns when they fit and as one "column: value" block per row otherwise.

    Args:
        title: the title (markup allowed); wraps at the console width.
        columns: column headers; a header starting with ">" is right-justified (the ">" is not shown).
        min_table_width: below this console width the vertical layout is used even if the columns would fit.
    """

    def __init__(self, title: str, *columns: str, min_table_width: int = 0) -> None:
        self.title = title
        self.columns = [c[1:] if c.startswith(">") else c for c in columns]
        self.right = [c.startswith(">") for c in columns]
        self.rows: list[list[str]] = []
        self.min_table_width = min_table_width

    def add_row(self, *cells: Any) -> None:
        """One row; missing trailing cells are empty."""
        row = ["" if c is None else str(c) for c in cells]
        self.rows.append(row + [""] * (len(self.columns) - len(row)))

    def table(self, widths: list[int] | None = None) -> Table:
        """The horizontal form: a rich Table with wrapping columns (column i `widths[i]` wide when given)."""
        t = Table(title=self.title, title_justify="left", header_style="bold")
        for i, (name, right) in enumerate(zip(self.columns, self.right)):
            t.add_column(name, justify="right" if right else "left", overflow="fold", no_wrap=False,
                         width=widths[i] if widths else None)
        for row in self.rows:
            t.add_row(*row)
        return t

    def vertical(self) -> Table:
        """The vertical form: the title, then per row its first cell and one "column: value" line per cell."""
        t = Table.grid(padding=(0, 1))
        t.add_column(overflow="fold", no_wrap=False, style="dim")
        t.add_column(overflow="fold", no_wrap=False)
        for row in self.rows:
            t.add_row(Text.from_markup(f"[bold]{self.columns[0]}:[/bold]") if self.columns[0] else "",
                      Text.from_markup(row[0] or "-", style="bold"))
            for name, cell in zip(self.columns[1:], row[1:]):
                if cell:
                    t.add_row(f"  {name}", cell)
        return t

    def _measure(self, console: Console) -> list[tuple[int, int]]:
        """Per column: (longest word, longest line), header included."""
        wide = console.options.update(width=10_000)
        out = []
        for i, name in enumerate(self.columns):
            ms = [Measurement.get(console, wide, Text.from_markup(c)) for c in [name] + [row[i] for row in self.rows]]
            out.append((max(m.minimum for m in ms), max(m.maximum for m in ms)))
        return out

    def widths(self, console: Console, width: int) -> list[int] | None:
        """Column widths that keep every word whole at `width` columns (None: no such widths)."""
        extra = 3 * len(self.columns) + 1                 # borders and one space of padding each side
        sizes = self._measure(console)
        if width < self.min_table_width or sum(lo for lo, _ in sizes) + extra > width:
            return None
        out = [lo for lo, _ in sizes]
        spare = width - extra - sum(out)
        while spare > 0:                                  # widen the column that is furthest from its longest line
            gap, i = max((hi - w, i) for i, (w, (_, hi)) in enumerate(zip(out, sizes)))
            if gap <= 0:
                break
            out[i] += 1
            spare -= 1
        return out

    def fits(self, console: Console, width: int) -> bool:
        """Whether the horizontal form shows every word whole at `width` columns."""
        return self.widths(console, width) is not None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        widths = self.widths(console, options.max_width)
        if widths is not None:
            yield self.table(widths)
            return
        yield Text.from_markup(f"[italic]{self.title}[/italic]") if self.title else Text("")
        yield self.vertical()


def kv(title: str, rows: Iterable[tuple[str, str]], key: str = "quantity", value: str = ">value") -> Grid:
    """A two-column quantity/value Grid.

    Args:
        title: the title.
        rows: (label, value) pairs; markup allowed.
        key: the first header.
        value: the second header (">" prefix: right-justified).

    Returns:
        The Grid.
    """
    g = Grid(title, key, value)
    for k, v in rows:
        g.add_row(k, v)
    return g

