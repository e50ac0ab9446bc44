"""Markdown to Slack mrkdwn, and splitting long text into messages Slack accepts.

Slack renders its own mrkdwn dialect: ``*bold*``, ``_italic_``, ``~strike~``,
``<url|text>`` links and ``>`` quotes, and it treats ``&``, ``<`` and ``>`` in text
as markup. Code (fenced blocks and inline spans) passes through byte for byte.

Lengths are counted in UTF-16 code units, which is at least the number of
characters Slack counts, so an emoji outside the Basic Multilingual Plane counts
as two.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Slack truncates message text beyond 40,000 characters (Slack changelog, April
# 2018); 4,000 per message is the size Slack recommends for readable messages.
# Block Kit limits a section block's text to 3,000 characters.
MESSAGE_TEXT_LIMIT = 4000
SECTION_TEXT_LIMIT = 3000

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+(?=\S)")
_QUOTE = re.compile(r"^((?:[ \t]*&gt;[ \t]?)+)")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"!?\[([^\]\n]+)\]\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^\s<>|]+)>")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC_STAR = re.compile(r"(?<![*\w])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![*\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
# Private-use characters stand in for Slack's bold marker while italics are converted.
_BOLD_MARK = "\ue000"
_LINK_MARK = "\ue001"


def markdown_to_mrkdwn(markdown: str) -> str:
    """Convert the model's Markdown to Slack mrkdwn, leaving code untouched.

    Fence lines lose their info string (```` ```python ```` becomes ```` ``` ````),
    because Slack would show it as the first line of code. The lines between the
    fences are copied unchanged.
    """
    lines = markdown.split("\n")
    output: list[str] = []
    fence: str | None = None
    for line in lines:
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            output.append("```")
        elif fence is not None and match and _closes(match, fence):
            fence = None
            output.append("```")
        elif fence is not None:
            output.append(line)
        else:
            output.append(_convert_line(line))
    if fence is not None:
        # An answer cut off inside a code block: close it so Slack still shows it as code.
        output.append("```")
    return "\n".join(output)


def _closes(match: re.Match[str], opening: str) -> bool:
    marker = match.group(1)
    return marker[0] == opening[0] and len(marker) >= len(opening) and not match.group(2).strip()


def _convert_line(line: str) -> str:
    heading = _HEADING.match(line)
    if heading:
        return f"*{_convert_inline(heading.group(1)).strip('*')}*"
    line = _BULLET.sub(lambda match: f"{match.group(1)}• ", line)
    converted = _convert_inline(line)
    # A leading ">" quotes the line in Slack; keep it as a literal character.
    return _QUOTE.sub(lambda match: match.group(1).replace("&gt;", ">"), converted)


def _convert_inline(text: str) -> str:
    """Convert emphasis and links in text outside inline code spans."""
    pieces: list[str] = []
    position = 0
    for match in _INLINE_CODE.finditer(text):
        pieces.append(_convert_prose(text[position : match.start()]))
        pieces.append(match.group(0))
        position = match.end()
    pieces.append(_convert_prose(text[position:]))
    return "".join(pieces)


def _convert_prose(text: str) -> str:
    links: list[str] = []

    def keep_link(url: str, label: str | None) -> str:
        url = escape_mrkdwn(url)
        links.append(f"<{url}|{_link_label(label)}>" if label else f"<{url}>")
        return f"{_LINK_MARK}{len(links) - 1}{_LINK_MARK}"

    text = _LINK.sub(lambda match: keep_link(match.group(2), match.group(1)), text)
    text = _AUTOLINK.sub(lambda match: keep_link(match.group(1), None), text)
    text = escape_mrkdwn(text)
    text = _BOLD.sub(lambda match: f"{_BOLD_MARK}{match.group(2)}{_BOLD_MARK}", text)
    text = _ITALIC_STAR.sub(r"_\1_", text)
    text = _STRIKE.sub(r"~\1~", text)
    text = text.replace(_BOLD_MARK, "*")
    return re.sub(f"{_LINK_MARK}(\\d+){_LINK_MARK}", lambda match: links[int(match.group(1))], text)


def _link_label(label: str) -> str:
    # "|" and ">" would end the label early; the label is shown, not parsed.
    return escape_mrkdwn(label.replace("|", "/")).replace("**", "")


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack reads as markup, so ``<!channel>`` stays text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True)
class _Line:
    """One line of text being split, with the code block it belongs to."""

    start: int
    text: str
    # The opening fence line of the code block this line lies inside, if any.
    inside: str | None
    # "open" or "close" for a fence line, None otherwise.
    fence_role: str | None


@dataclass(frozen=True)
class _Break:
    """A place where text may be cut: ``position`` is where the next part starts."""

    position: int
    rank: int
    open_fence: str | None


# Ranks of break points, best first.
_PARAGRAPH, _LINE, _CODE_LINE, _SPACE, _ANYWHERE = range(5)
_CLOSING_FENCE = "\n```"
# How far past the limit to look for the end of the line the limit falls in.
_LOOKAHEAD = 4096


def split_text(text: str, limit: int = MESSAGE_TEXT_LIMIT) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` UTF-16 code units, in order.

    Cuts prefer paragraph boundaries, then line ends, then line ends inside a code
    block, then spaces. A part is cut mid-word only when nothing else fits. A code
    block that is cut is closed at the end of one part and reopened at the start
    of the next, and its lines are otherwise kept exactly. No cut falls inside a
    character sequence that displays as one symbol (an emoji with modifiers or
    joiners, a flag, a letter with combining accents). Blank text gives no parts.
    """
    if limit < 16:
        raise ValueError(f"limit must be at least 16 UTF-16 code units, not {limit}")
    parts: list[str] = []
    body = text.strip("\n")
    while utf16_length(body) > limit:
        head, body = _cut(body, limit)
        parts.append(head)
    if body.strip():
        parts.append(body)
    return parts


def _cut(body: str, limit: int) -> tuple[str, str]:
    """Return the first part of ``body`` and the rest, the rest starting with a reopened fence if needed."""
    window = _window(body, limit)
    lines = _lines(window)
    offsets = _utf16_offsets(window)
    chosen = _choose_break(window, lines, offsets, limit)
    head = _head(body, chosen)
    rest = body[chosen.position :]
    if chosen.open_fence is not None:
        return head + _CLOSING_FENCE, f"{chosen.open_fence}\n{rest}"
    if chosen.rank < _SPACE:
        rest = rest.lstrip("\n")
    return head, rest


def _window(body: str, limit: int) -> str:
    """Return the start of ``body`` that can contain a cut, since no cut lies past ``limit`` characters."""
    line_end = body.find("\n", limit)
    if line_end == -1 or line_end > limit + _LOOKAHEAD:
        return body[: limit + _LOOKAHEAD]
    return body[:line_end]


def _head(body: str, cut: _Break) -> str:
    if cut.open_fence is not None:
        # Inside code, keep every byte: drop only the line break the cut falls on.
        head = body[: cut.position]
        return head[:-1] if head.endswith("\n") else head
    return body[: cut.position].rstrip()


def _utf16_offsets(text: str) -> list[int]:
    """UTF-16 length of ``text[:i]`` for every i from 0 to len(text)."""
    offsets = [0]
    for char in text:
        offsets.append(offsets[-1] + (2 if ord(char) > 0xFFFF else 1))
    return offsets


def _lines(text: str) -> list[_Line]:
    lines: list[_Line] = []
    fence: str | None = None
    opener = ""
    start = 0
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if fence is None and match:
            lines.append(_Line(start, line, None, "open"))
            fence, opener = match.group(1), line.strip()
        elif fence is not None and match and _closes(match, fence):
            lines.append(_Line(start, line, None, "close"))
            fence = None
        else:
            lines.append(_Line(start, line, opener if fence is not None else None, None))
        start += len(line) + 1
    return lines


def _break_points(lines: list[_Line]) -> list[_Break]:
    """List every place where the text may be cut without cutting a word, in text order."""
    breaks: list[_Break] = []
    for index, line in enumerate(lines):
        if index > 0:
            line_break = _line_break(lines[index - 1], line)
            if line_break is not None:
                breaks.append(line_break)
        if line.inside is None and line.fence_role is None:
            breaks.extend(_Break(line.start + match.end(), _SPACE, None) for match in re.finditer(r"[ \t]+", line.text))
    return breaks


def _line_break(previous: _Line, line: _Line) -> _Break | None:
    if previous.fence_role == "open" or line.fence_role == "close":
        # Cutting here would leave an empty code block in one of the parts.
        return None
    if line.inside is not None:
        return _Break(line.start, _CODE_LINE, line.inside)
    paragraph = not previous.text.strip() or previous.fence_role == "close" or line.fence_role == "open"
    return _Break(line.start, _PARAGRAPH if paragraph else _LINE, None)


def _choose_break(window: str, lines: list[_Line], offsets: list[int], limit: int) -> _Break:
    def fits(candidate: _Break) -> bool:
        if candidate.position <= 0 or candidate.position > len(window):
            return False
        head = _head(window, candidate)
        closing = len(_CLOSING_FENCE) if candidate.open_fence is not None else 0
        return offsets[len(head)] + closing <= limit

    usable = [candidate for candidate in _break_points(lines) if fits(candidate)]
    half = limit // 2
    for worst_rank in (_PARAGRAPH, _LINE, _CODE_LINE):
        filled = [c for c in usable if c.rank <= worst_rank and offsets[c.position] >= half]
        if filled:
            return filled[-1]
    for worst_rank in (_CODE_LINE, _SPACE):
        found = [c for c in usable if c.rank <= worst_rank]
        if found:
            return found[-1]
    return _hard_break(window, lines, offsets, limit)


def _hard_break(window: str, lines: list[_Line], offsets: list[int], limit: int) -> _Break:
    """Cut mid-word at the last boundary between displayed symbols that fits."""
    position = max(index for index, offset in enumerate(offsets) if offset <= limit)
    line = next(line for line in reversed(lines) if line.start <= position)
    if line.inside is not None:
        position = max(index for index, offset in enumerate(offsets) if offset <= limit - len(_CLOSING_FENCE))
    while position > 1 and _joined(window, position):
        position -= 1
    return _Break(position, _ANYWHERE, line.inside)


def _joined(text: str, position: int) -> bool:
    """True when ``text[position]`` belongs to the same displayed symbol as the character before it."""
    if position <= 0 or position >= len(text):
        return False
    before, after = text[position - 1], text[position]
    if before == "\u200d" or after == "\u200d":
        return True
    code = ord(after)
    if 0xFE00 <= code <= 0xFE0F or 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F or code == 0x20E3:
        return True
    if unicodedata.category(after) in {"Mn", "Me", "Mc"}:
        return True
    if _is_regional_indicator(before) and _is_regional_indicator(after):
        # Flags are pairs of regional indicators: count the run to know whether this one is a second half.
        run = 0
        index = position - 1
        while index >= 0 and _is_regional_indicator(text[index]):
            run += 1
            index -= 1
        return run % 2 == 1
    return False


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF
