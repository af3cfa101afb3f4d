"""Every string from the data made safe for the output it goes to (terminal, Markdown, XML, CSV).

One place per output kind, so that no renderer escapes on its own (HTML is escaped by jinja2's
autoescaping in the templates).
"""

from __future__ import annotations

import re
import unicodedata

_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~#<>])")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


#: Bidirectional-text controls: they reorder how the text around them is shown ("Trojan Source"),
#: so a cohort name could display as another; they are removed like control characters.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def strip_controls(text: object) -> str:
    """``text`` without C0/C1 control characters (escape sequences, OSC-8 links, window titles,
    bells) or bidirectional-text controls, each replaced by a space; tabs and line breaks become
    spaces too."""
    return "".join(" " if _hidden(ch) else ch for ch in str(text))


def _hidden(ch: str) -> bool:
    """A control or bidirectional-text character: never shown as it is."""
    return unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS


def html_text(text: str) -> str:
    """A data string for the HTML report (escaped afterwards by jinja2): control and bidirectional
    characters removed as for the terminal, line breaks and tabs kept."""
    if text.isprintable():  # the common case, at C speed
        return text
    return "".join(" " if ch not in "\n\t" and _hidden(ch) else ch for ch in text)


#: Longest data string shown whole in the terminal and in Markdown: rich lays out a long cell in
#: time that grows with the square of its length (86 s for 100,000 characters), and a pull-request
#: comment has a size limit. The JSON report keeps every string whole.
LONGEST_SHOWN = 300


def shortened(text: str) -> str:
    """``text``, or its first LONGEST_SHOWN characters and how many more there are."""
    if len(text) <= LONGEST_SHOWN:
        return text
    return f"{text[:LONGEST_SHOWN]}... ({len(text) - LONGEST_SHOWN:,} more characters)"


def terminal(text: object) -> str:
    """A data string for rich's terminal output: no control characters, no rich markup."""
    from rich.markup import escape

    return escape(strip_controls(text))


def terminal_cell(text: object) -> str:
    """A data string for a terminal table cell: as :func:`terminal`, shortened (:func:`shortened`)."""
    return terminal(shortened(str(text)))


def markdown(text: object) -> str:
    """A data string as literal Markdown on one line, safe inside a table cell and a pull-request
    comment: formatting characters backslashed, & < > as entities, no @mentions or autolinks."""
    value = " ".join(strip_controls(text).split())
    value = value.replace("&", "&amp;")
    value = _MARKDOWN_SPECIAL.sub(lambda m: {"<": "&lt;", ">": "&gt;"}.get(m.group(1), "\\" + m.group(1)), value)
    return value.replace("@", "&#64;").replace("://", ":&#47;&#47;").replace("www.", "www&#46;")


def markdown_cell(text: object) -> str:
    """A data string for a Markdown table cell: as :func:`markdown`, shortened (:func:`shortened`)."""
    return markdown(shortened(str(text)))


def xml(text: object) -> str:
    """A string with the characters XML 1.0 forbids removed (ElementTree escapes the rest)."""
    return _XML_FORBIDDEN.sub("", str(text))


def csv_cell(text: object) -> str:
    """A CSV cell a spreadsheet will not run as a formula (OWASP: prefix a quote)."""
    value = str(text)
    return "'" + value if value.startswith(_FORMULA_START) else value
