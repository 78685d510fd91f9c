"""Reports people read and look at: plots, the graph drawing, the HTML page, comparisons.

Everything here works on the report dict produced by :func:`app.analysis.analyze`
(schema in ``report["schema_version"]``). Importing this package is cheap:
matplotlib and Jinja2 are imported inside the functions that need them.

Example::

    >>> from app.reports.html import render_report_html
    >>> page = render_report_html(report)                  # the seed's Example 3
    >>> page.startswith("<!DOCTYPE html>")
    True
"""
