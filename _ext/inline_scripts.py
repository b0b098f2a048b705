"""Sphinx extension for the book build: every inline ``<script>`` is written into a page once.

Why: sphinx-thebe (which Jupyter Book 1.x always loads) adds an inline script,
``const THEBE_JS_URL = ...; const thebe_selector = ...``, from ``env-before-read-docs``, that is after
the HTML builder has started. Sphinx 7.4 then records it twice: ``app.add_js_file(None, body=...)``
hands it to the builder as ``filename=None`` and to the registry, and before writing the pages the
builder adds the registry's scripts again as ``filename=''``. Its duplicate check compares file names,
and ``None != ''``, so every page got the script twice and the browser reported
"Identifier 'THEBE_JS_URL' has already been declared" (a ``const`` declared twice).

This drops, per page, every script that repeats an earlier one (same file or same inline body, same
attributes) from the list the page template writes, so any extension's inline script is written once.
"""

from __future__ import annotations

from typing import Any


def script_key(script: Any) -> tuple:
    """What makes two of Sphinx's ``_JavaScript`` entries (or plain file names) the same script."""
    if isinstance(script, str):
        return (script, ())
    attributes = getattr(script, "attributes", {}) or {}
    return (getattr(script, "filename", None) or "",
            tuple(sorted((k, str(v)) for k, v in attributes.items() if k != "priority")))


def unique_scripts(scripts: list) -> list:
    """``scripts`` without repeats, first occurrence kept, order unchanged."""
    seen: set[tuple] = set()
    kept = []
    for script in scripts:
        key = script_key(script)
        if key not in seen:
            seen.add(key)
            kept.append(script)
    return kept


def _page_context(app, pagename, templatename, context, doctree) -> None:  # noqa: ANN001 (Sphinx)
    if "script_files" in context:
        context["script_files"] = unique_scripts(list(context["script_files"]))


def setup(app) -> dict:  # noqa: ANN001
    app.connect("html-page-context", _page_context, priority=900)  # after MyST-NB adds its scripts
    return {"parallel_read_safe": True, "parallel_write_safe": True}
