r"""LaTeX: one booktabs `table` per table (needs \usepackage{booktabs}); best \textbf, second
\underline, published rows \textit; arrows as $\downarrow$ / $\uparrow$; notes as % comments."""
from __future__ import annotations

from bench.reporting.renderers.base import register_renderer
from bench.reporting.renderers.markup import MarkupRenderer
from bench.reporting.table_model import NA, Table

# Characters LaTeX treats specially, then the symbols the table model uses, in math mode.
_ESCAPES = (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"), ("_", r"\_"),
            ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}"))
_SYMBOLS = (("±", r"$\pm$"), (NA, "--"), ("†", r"$^\dagger$"), ("↓", r"$\downarrow$"), ("↑", r"$\uparrow$"),
            ("∞", r"$_\infty$"))


def escape(text: str) -> str:
    out = str(text)
    for a, b in _ESCAPES + _SYMBOLS:
        out = out.replace(a, b)
    return out


@register_renderer
class Latex(MarkupRenderer):
    name = "tex"
    extension = "tex"
    bold, underline, italic = r"\textbf{%s}", r"\underline{%s}", r"\textit{%s}"
    sep, row_end = " & ", r" \\"

    def escape(self, text: str) -> str:
        return escape(text)

    def opening(self, table: Table) -> list[str]:
        spec = "".join("r" if c.numeric else "l" for c in table.columns)
        return [r"\begin{table}[t]", r"\centering", rf"\caption{{{escape(table.title)}}}",
                rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]

    def header_rule(self, table: Table) -> list[str]:
        return [r"\midrule"]

    def closing(self, table: Table) -> list[str]:
        return [r"\bottomrule", r"\end{tabular}", r"\end{table}"]

    def notes(self, lines: list[str]) -> str:
        return "\n".join("% " + line for line in lines)
