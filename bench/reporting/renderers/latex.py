r"""LaTeX: one booktabs `table` per table (needs \usepackage{booktabs}); best \textbf, second
\underline, published rows \textit; arrows as $\downarrow$ / $\uparrow$; notes as % comments."""
from __future__ import annotations

from bench.reporting.renderers.base import Renderer, register_renderer
from bench.reporting.table_model import NA, Cell, Table

# Characters LaTeX treats specially, then the symbols the table model uses, in math mode.
_ESCAPES = (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"), ("_", r"\_"),
            ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}"))
_SYMBOLS = (("±", r"$\pm$"), (NA, "--"), ("†", r"$^\dagger$"), ("↓", r"$\downarrow$"), ("↑", r"$\uparrow$"))


def escape(text: str) -> str:
    out = str(text)
    for a, b in _ESCAPES + _SYMBOLS:
        out = out.replace(a, b)
    return out


@register_renderer
class Latex(Renderer):
    name = "tex"
    extension = "tex"

    def cell(self, cell: Cell) -> str:
        text = escape(cell.text + ("†" if cell.dagger else ""))
        text = rf"\textbf{{{text}}}" if cell.rank == 1 else rf"\underline{{{text}}}" if cell.rank == 2 else text
        return rf"\textit{{{text}}}" if cell.italic and not cell.empty else text

    def table(self, table: Table) -> str:
        spec = "".join("r" if c.numeric else "l" for c in table.columns)
        lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{escape(table.title)}}}",
                 rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(escape(c.header) for c in table.columns)
                 + r" \\", r"\midrule"]
        lines += [" & ".join(self.cell(c) for c in row) + r" \\" for row in table.rows]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        return "\n".join(lines)

    def notes(self, lines: list[str]) -> str:
        return "\n".join("% " + line for line in lines)
