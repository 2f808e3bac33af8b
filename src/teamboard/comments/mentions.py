"""``@mentions`` in comment bodies.

Syntax: ``@`` followed by a team member's email address (``@ada@example.com``) or by its
local part (``@ada``), case-insensitive. The ``@`` must start the text or follow a
character that cannot be part of an address (space, punctuation other than ``. _ % + - /``),
so addresses and paths written in the text (``bob@example.com``, ``a/@b``) mention nobody.
Trailing dots and hyphens are punctuation (``thanks @ada.``). Mentions inside Markdown
code (fenced blocks and inline code spans) are ignored.

A local part mentions a member only when exactly one member of the team has it; otherwise
the full address is needed. Only members who can see the task's project are mentioned
(resolved in SQL, see ``comments.repository.resolve_mentions``). At most
``MAX_MENTIONS`` distinct names are considered per comment, in order of appearance.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

MAX_MENTIONS = 50

# A fenced block runs to its closing fence, or to the end of the text when unclosed. The
# opening run is atomic: a long line of backticks that opens nothing was tried again at
# every shorter length (quadratic: 70 ms for a comment of 10,000 backticks).
_FENCED_CODE = re.compile(
    r"^ {0,3}((?>`{3,}|~{3,}))[^\n]*\n.*?(?:^ {0,3}\1[`~]*[ \t]*$|\Z)", re.M | re.S
)
_BACKTICKS = re.compile(r"`+")
_MENTION = re.compile(
    r"(?<![\w.%+/@-])@"
    r"([a-z0-9._%+-]+(?:@[a-z0-9-]+(?:\.[a-z0-9-]+)+)?)",
    re.I,
)


@dataclass(frozen=True)
class MentionNames:
    """Lower-cased full addresses and bare local parts found in a body."""

    emails: list[str]
    local_parts: list[str]

    def __bool__(self) -> bool:
        return bool(self.emails or self.local_parts)


def parse_mentions(body: str) -> MentionNames:
    text = _without_code_spans(_FENCED_CODE.sub(" ", body))
    names: list[str] = []
    for match in _MENTION.finditer(text):
        name = match.group(1).rstrip(".-").lower()
        if name and name not in names:
            names.append(name)
            if len(names) == MAX_MENTIONS:
                break
    return MentionNames(
        emails=[name for name in names if "@" in name],
        local_parts=[name for name in names if "@" not in name],
    )


def _without_code_spans(text: str) -> str:
    """``text`` with each inline code span replaced by a space. As in CommonMark, a run of
    backticks opens a span that the next run of the same length closes; a run that nothing
    closes is literal text. The runs are paired through their positions by length, so the
    cost grows with the text (a regular expression with a back-reference did it by
    backtracking: a comment of 10,000 backticks took a second of the event loop)."""
    runs = [match.span() for match in _BACKTICKS.finditer(text)]
    by_length: dict[int, list[int]] = {}
    for index, (start, end) in enumerate(runs):
        by_length.setdefault(end - start, []).append(index)
    pieces: list[str] = []
    kept_from = index = 0
    while index < len(runs):
        start, end = runs[index]
        same = by_length[end - start]
        following = bisect.bisect_right(same, index)
        if following == len(same):
            index += 1  # never closed: literal backticks
            continue
        closing = same[following]
        pieces += (text[kept_from:start], " ")
        kept_from, index = runs[closing][1], closing + 1
    pieces.append(text[kept_from:])
    return "".join(pieces)
