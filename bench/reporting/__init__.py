"""Tables, figures and the HTML report, built from the records on disk; published numbers beside them.

- summary: `build(out, ...)` reads the records into a `Summary` (frames.py: the run frame and the
  per-dataset frame; the cross-dataset frame).
- table_model + footnotes: tables as data (columns, cells with marks, notes); renderers/: one module
  per format (terminal, md, csv, tex, html) in a registry; tables: render a Summary, write OUT/tables/.
- plots, code_words, figure_style: figures under OUT/figures/; report: OUT/report.html.
- reported: published numbers (reported_results.csv) as rows marked "reported".
"""
