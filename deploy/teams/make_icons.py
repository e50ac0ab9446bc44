"""Draw the Teams app icons (color.png and outline.png) with the standard library only.

Teams wants a 192x192 full-colour icon and a 32x32 outline icon that is white on
a transparent background. Both show a speech bubble with three dots. Run
``python deploy/teams/make_icons.py`` to redraw them next to this file.
"""

from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

BACKGROUND = (47, 111, 159)  # #2F6F9F, also the manifest's accentColor
WHITE = (255, 255, 255)
SUPERSAMPLING = 4  # samples per pixel side, for smooth edges

Shape = Callable[[float, float], bool]


def write_png(path: Path, width: int, height: int, rgba_rows: list[bytes]) -> None:
    """Write 8-bit RGBA rows as a PNG file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # bit depth 8, colour type 6 (RGBA)
    raw = b"".join(b"\x00" + row for row in rgba_rows)  # filter type 0 (None) on every row
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    path.write_bytes(png)


def rounded_rect(left: float, top: float, right: float, bottom: float, radius: float) -> Shape:
    def inside(x: float, y: float) -> bool:
        if not (left <= x <= right and top <= y <= bottom):
            return False
        dx = max(left + radius - x, 0.0, x - (right - radius))
        dy = max(top + radius - y, 0.0, y - (bottom - radius))
        return dx * dx + dy * dy <= radius * radius

    return inside


def triangle(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> Shape:
    def side(p: tuple[float, float], q: tuple[float, float], x: float, y: float) -> float:
        return (q[0] - p[0]) * (y - p[1]) - (q[1] - p[1]) * (x - p[0])

    def inside(x: float, y: float) -> bool:
        signs = (side(a, b, x, y), side(b, c, x, y), side(c, a, x, y))
        return all(s >= 0 for s in signs) or all(s <= 0 for s in signs)

    return inside


def circle(cx: float, cy: float, radius: float) -> Shape:
    return lambda x, y: (x - cx) ** 2 + (y - cy) ** 2 <= radius * radius


BUBBLE = rounded_rect(0.18, 0.24, 0.82, 0.68, 0.1)
TAIL = triangle((0.30, 0.64), (0.48, 0.64), (0.27, 0.81))
DOTS = [circle(x, 0.46, 0.05) for x in (0.36, 0.50, 0.64)]


def coverage(shape: Shape, px: int, py: int, size: int) -> float:
    """Fraction of pixel (px, py) that ``shape`` covers, in a unit square scaled to ``size``."""
    hits = 0
    for i in range(SUPERSAMPLING):
        for j in range(SUPERSAMPLING):
            x = (px + (i + 0.5) / SUPERSAMPLING) / size
            y = (py + (j + 0.5) / SUPERSAMPLING) / size
            hits += shape(x, y)
    return hits / (SUPERSAMPLING * SUPERSAMPLING)


def color_icon(size: int = 192) -> list[bytes]:
    """White bubble with background-coloured dots, on a full-bleed background."""

    def white(x: float, y: float) -> bool:
        return (BUBBLE(x, y) or TAIL(x, y)) and not any(dot(x, y) for dot in DOTS)

    rows = []
    for py in range(size):
        row = bytearray()
        for px in range(size):
            share = coverage(white, px, py, size)
            row += bytes(round(w * share + b * (1 - share)) for w, b in zip(WHITE, BACKGROUND)) + b"\xff"
        rows.append(bytes(row))
    return rows


def outline_icon(size: int = 32) -> list[bytes]:
    """White bubble outline and dots on transparency, as Teams requires for the outline icon."""
    stroke = 2 / size
    inner = rounded_rect(0.18 + stroke, 0.24 + stroke, 0.82 - stroke, 0.68 - stroke, 0.1 - stroke)

    def white(x: float, y: float) -> bool:
        ring = BUBBLE(x, y) and not inner(x, y)
        return ring or (TAIL(x, y) and not inner(x, y)) or any(dot(x, y) for dot in DOTS)

    rows = []
    for py in range(size):
        row = bytearray()
        for px in range(size):
            row += bytes(WHITE) + bytes([round(255 * coverage(white, px, py, size))])
        rows.append(bytes(row))
    return rows


def main(folder: Path) -> None:
    write_png(folder / "color.png", 192, 192, color_icon(192))
    write_png(folder / "outline.png", 32, 32, outline_icon(32))
    print(f"wrote {folder / 'color.png'} and {folder / 'outline.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
