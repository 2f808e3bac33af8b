"""Turning what a user typed into a full-text query that cannot fail.

User text never reaches ``to_tsquery`` as syntax: it is reduced to words (letters and digits,
in any script), each quoted, joined with ``&``; the last word gets ``:*`` so that results
follow typing (``deplo`` finds "deployment"). Operators, quotes, backslashes and control
characters are thus only separators. The words are matched with the ``simple``
configuration (lower-casing, no stemming, no stop words), language-neutral and consistent
with prefix matching.
"""

from __future__ import annotations

import re

#: What the search route accepts (characters), and how many words of it are used.
MAX_QUERY_LENGTH = 200
MAX_TERMS = 16

_WORD = re.compile(r"[^\W_]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def normalize(q: str) -> str:
    """The query as matched and bound to cursors: control characters removed, whitespace
    collapsed."""
    return " ".join(_CONTROL.sub(" ", q).split())


def to_tsquery_text(q: str) -> str:
    """Input for ``to_tsquery('simple', ...)``; empty when ``q`` has no word."""
    terms = _WORD.findall(q.lower())[:MAX_TERMS]
    if not terms:
        return ""
    quoted = [f"'{term}'" for term in terms]
    quoted[-1] += ":*"
    return " & ".join(quoted)
