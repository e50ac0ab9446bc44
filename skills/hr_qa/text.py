"""Words, numbers and answer-sized passages of HR source text.

A passage is the smallest piece of a chunk that can answer a question on its own:
a sentence, a list item, or a table row rendered with its header ("Grade: G3;
Berlin – leave days: 29"). The answer policy scores and quotes passages, never
whole chunks, so answers stay short and specific.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

# Dashes and minus signs that sources and questions use interchangeably.
_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"), "-")
_WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")
_MARKUP = re.compile(r"\*\*|__|`|(?<!\w)[*_](?=\S)|(?<=\S)[*_](?!\w)")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_TABLE_DELIMITER = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_BLOCK_QUOTE = re.compile(r"^\s*(?:>\s?)+")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,2}[.)])\s+(?:\[[ xX]\]\s+)?")
# A sentence ends at . ! ? followed by a space and an upper-case letter, digit or quote.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9€$£])")
# "e.g." and "i.e." and single initials must not end a sentence.
_ABBREVIATION_END = re.compile(r"(?:\b(?:e\.g|i\.e|etc|vs|ext|approx|incl|no|inc|ltd|co|dr|mr|ms|st)\.|\b[A-Z]\.)$", re.IGNORECASE)
# A short bold label such as "**Pay.**" that introduces the paragraph after it.
_LABEL = re.compile(r"^\s*\*\*([^*]{1,60}?)[.:]?\*\*[.:]?\s+")

MAX_PASSAGE_CHARS = 360
# A sentence opening with one of these leans on the sentence before it ("After
# those, use the statutory benefit…"), so the two are quoted together.
_BACK_REFERENCE = re.compile(
    r"^(?:after (?:that|those|this)|before (?:that|this)|these|those|this|that|it|they|then|otherwise|"
    r"if (?:that|so|not)|in (?:that|this) case|beyond (?:that|this))\b",
    re.IGNORECASE,
)

# Function words, clitics ("they're" gives "re") and conversational words that
# never name an HR topic ("how fast will I hear back").
STOP_WORDS = frozenset(
    """a about after again all also am an and any are as at be been before being both but by can
    could did do does doing don during each else for from get gets getting give go going got had has
    have having he her here hers him his how i i'd i'll i'm i've if in into is it its it's just let
    like me might mine more most must my need needs no nor not now of off on once only or other our
    ours out over own please same shall she should so some such tell than that that's the their them
    then there these they this those through to too under until up us very want was we were what
    what's whats when where which while who whom why will with would yes yet you your yours
    many much anything something someone anyone thing things really actually exactly currently
    current know
    re ll ve
    fast quick quickly soon hear okay ok stuff thing things lot lots kind sort guys pretty quite maybe
    """.split()
)

_stemmer = snowballstemmer.stemmer("english")


def normalise(text: str) -> str:
    """Lower-case ``text`` with dashes unified, markup removed and spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).translate(_DASHES)
    text = _TAG.sub(" ", _MARKUP.sub("", text))
    return " ".join(text.lower().split())


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    return _stemmer.stemWord(word)


def words(text: str) -> list[str]:
    """Lower-case words and numbers of ``text``; ``1,500`` and ``2.5`` stay whole."""
    return _WORD.findall(normalise(text))


def content_words(text: str) -> list[str]:
    return [word for word in words(text) if word not in STOP_WORDS and (len(word) > 1 or word.isdigit())]


def stems(text: str) -> set[str]:
    return set(_stems(text))


# Questions retrieve the same passages again and again; a few thousand cover a
# handbook's passages in a few megabytes.
@lru_cache(maxsize=8192)
def _stems(text: str) -> frozenset[str]:
    return frozenset(stem(word) for word in content_words(text))


def numbers_in(text: str) -> set[str]:
    """Return the numbers in ``text`` without thousands separators: ``€1,500`` gives ``1500``."""
    found = set()
    for match in re.findall(r"\d+(?:[.,]\d+)*", normalise(text)):
        found.add(_plain_number(match))
    return found


def _plain_number(value: str) -> str:
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", value):
        value = value.replace(",", "")
    return value.rstrip(".,")


def number_ranges(text: str) -> list[tuple[float, float]]:
    """Numeric ranges such as ``6-9``, ``10–14`` or ``15+`` (open-ended) found in ``text``."""
    plain = normalise(text)
    found = [(float(low), float(high)) for low, high in re.findall(r"\b(\d+)\s*-\s*(\d+)\b", plain)]
    found.extend((float(low), float("inf")) for low in re.findall(r"\b(\d+)\s*\+", plain))
    return [(low, high) for low, high in found if low <= high]


@dataclass(frozen=True)
class Passage:
    """A sentence, list item or table row of a source chunk.

    ``text`` is what an answer quotes; ``context`` holds the table header or the
    lead-in line above a list, which helps to score the passage but is not quoted.
    """

    text: str
    context: str = ""
    kind: str = "sentence"
    position: int = 0


def strip_html_comments(text: str) -> str:
    return _HTML_COMMENT.sub(" ", text)


def split_passages(text: str, *, max_chars: int = MAX_PASSAGE_CHARS) -> list[Passage]:
    """Split a chunk's text into passages in reading order."""
    passages: list[Passage] = []
    lines = strip_html_comments(text).replace("\r\n", "\n").split("\n")
    lead_in = ""
    index = 0
    while index < len(lines):
        line = lines[index]
        if _is_table_start(lines, index):
            end = _table_end(lines, index)
            passages.extend(_table_passages(lines[index:end], lead_in, start=len(passages)))
            index = end
            continue
        # Block quotes ("> - Munich: …") read like the text they quote.
        line = _BLOCK_QUOTE.sub("", line)
        stripped = line.strip()
        index += 1
        if not stripped or stripped.startswith(("```", "~~~")):
            continue
        if stripped.startswith("#"):
            # Headings label what follows; they answer nothing by themselves.
            lead_in = _clean(stripped.lstrip("#"))
            continue
        item = _LIST_ITEM.match(line)
        if item:
            body = _clean(line[item.end():])
            for piece in _limit(body, max_chars):
                passages.append(Passage(piece, context=lead_in, kind="item", position=len(passages)))
            continue
        lead_in = ""
        cleaned = _clean(stripped)
        if _introduces_list(cleaned, lines, index):
            lead_in = cleaned.rstrip(":")
            # A lead-in that is itself informative ("Berlin: at least 2 days") stays a passage too.
            if len(content_words(cleaned)) <= 4:
                continue
        for sentence in _sentences(stripped):
            for piece in _limit(sentence, max_chars):
                passages.append(Passage(piece, context=lead_in, kind="sentence", position=len(passages)))
    return [passage for passage in passages if len(passage.text) > 3]


def _introduces_list(cleaned: str, lines: list[str], next_index: int) -> bool:
    following = next((_BLOCK_QUOTE.sub("", line) for line in lines[next_index:] if _BLOCK_QUOTE.sub("", line).strip()), "")
    return bool(_LIST_ITEM.match(following)) and (cleaned.endswith(":") or len(cleaned) <= 80)


def _clean(text: str) -> str:
    text = _TAG.sub(" ", text)
    text = _MARKUP.sub("", text)
    return " ".join(text.split()).strip()


def _sentences(paragraph: str) -> list[str]:
    label = ""
    match = _LABEL.match(paragraph)
    if match:
        # "**Pay.** Your salary continues…" keeps its label on the first sentence.
        label = match.group(1).strip() + ": "
        paragraph = paragraph[match.end():]
    parts: list[str] = []
    for part in _SENTENCE_BREAK.split(_clean(paragraph)):
        joins_previous = _ABBREVIATION_END.search(parts[-1]) or (
            _BACK_REFERENCE.match(part) and len(parts[-1]) + len(part) < MAX_PASSAGE_CHARS
        ) if parts else False
        if joins_previous:
            parts[-1] = parts[-1] + " " + part
        else:
            parts.append(part)
    if parts and label:
        parts[0] = label + parts[0]
    return [part.strip() for part in parts if part.strip()]


def _limit(text: str, max_chars: int) -> list[str]:
    """Cut a passage longer than ``max_chars`` at semicolons or commas, then at spaces."""
    if len(text) <= max_chars:
        return [text]
    pieces: list[str] = []
    current = ""
    for part in re.split(r"(?<=[;,])\s+", text):
        if current and len(current) + 1 + len(part) > max_chars:
            pieces.append(current)
            current = part
        else:
            current = f"{current} {part}".strip()
    if current:
        pieces.append(current)
    result: list[str] = []
    for piece in pieces:
        while len(piece) > max_chars:
            cut = piece.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            result.append(piece[:cut])
            piece = piece[cut:].strip()
        result.append(piece)
    return result


def _is_table_start(lines: list[str], index: int) -> bool:
    return (
        "|" in lines[index]
        and index + 1 < len(lines)
        and _TABLE_DELIMITER.match(lines[index + 1]) is not None
    )


def _table_end(lines: list[str], index: int) -> int:
    end = index + 2
    while end < len(lines) and lines[end].strip() and "|" in lines[end]:
        end += 1
    return end


def _cells(line: str) -> list[str]:
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|"):
        body = body[:-1]
    return [_clean(cell) for cell in body.split("|")]


def _table_passages(lines: list[str], lead_in: str, *, start: int) -> list[Passage]:
    header = _cells(lines[0])
    passages = []
    for offset, line in enumerate(lines[2:]):
        cells = _cells(line)
        if not any(cells):
            continue
        passages.append(
            Passage(
                render_row(header, cells),
                context=" ".join([lead_in, *header]).strip(),
                kind="row",
                position=start + offset,
            )
        )
    return passages


def render_row(header: list[str], cells: list[str]) -> str:
    """Render a table row as "Header: value; …", using the first cell as a label when its header is blank."""
    parts: list[str] = []
    label = ""
    for position, cell in enumerate(cells):
        name = header[position] if position < len(header) else ""
        if not cell or cell in {"-", "–"}:
            continue
        if not name:
            if position == 0:
                label = cell
            else:
                parts.append(cell)
            continue
        parts.append(f"{name}: {cell}")
    body = "; ".join(parts)
    return f"{label} — {body}" if label else body
