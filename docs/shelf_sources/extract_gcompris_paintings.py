#!/usr/bin/env python3
"""Rebuild whole paintings from GCompris's "paintings" puzzle, for the style shelf.

A build-time tool, not part of the add-on (it is not packed into the extension). It reads
`usr/share/gcompris-qt/rcc/paintings.rcc` from the Debian package gcompris-qt-data 3.1-2 (a
Qt binary resource file), pastes each painting's puzzle pieces (*.webp) back together at the
positions the activity's board*.qml files give them (nudged by a pixel or two where the
rounded positions leave neighbouring pieces disagreeing: see fit_corners), trims the ragged
outer edge and the scan's rim, downscales the result so its longest side is at most 512 px
and writes a JPEG (quality 88) per painting:

    apt-get download gcompris-qt-data && dpkg-deb -x gcompris-qt-data_3.1-2_all.deb x
    python docs/shelf_sources/extract_gcompris_paintings.py \
        x/usr/share/gcompris-qt/rcc/paintings.rcc addon/styles
    python docs/shelf_sources/extract_gcompris_paintings.py --list paintings.rcc  # its files

Needs Pillow built with WebP. See addon/styles/README.md for each painting's provenance.

The rcc layout (Qt's rcc format, versions 1-3), all integers big-endian:
  header: b"qres", version, tree offset, data offset, names offset[, flags if version >= 3]
  tree:   one entry per node, 14 bytes (version 1) or 22 bytes (version >= 2, adds an 8-byte
          mtime): name offset (4), flags (2: 1 zlib, 2 directory, 4 zstd), then for a directory
          child count (4) and first child index (4), for a file country (2), language (2)
          and data offset (4)
  names:  length in UTF-16 units (2), hash (4), the name in UTF-16BE
  data:   length (4) then the bytes; zlib-compressed files start with their unpacked length (4)
"""

from __future__ import annotations

import argparse
import io
import os
import re
import struct
import sys
import zlib

import numpy as np
from PIL import Image

FLAG_ZLIB, FLAG_DIR, FLAG_ZSTD = 1, 2, 4
BOARDS = "/gcompris/src/activities/paintings/resource/board/"
IMAGES = "/gcompris/src/activities/paintings/resource/"
LONGEST_SIDE = 512
JPEG_QUALITY = 88

# Shelf file name -> the GCompris board that lays out its pieces. Chosen because each is
# clearly public domain (see addon/styles/README.md) and reassembles without a gap, and
# because their textures differ: a woodblock print, impressionist dabs, thick
# post-impressionist strokes, smooth Renaissance oil.
PAINTINGS = {
    "great_wave": "board7_0.qml",          # Hokusai, The Great Wave off Kanagawa
    "moulin_de_la_galette": "board1_0.qml",  # Renoir, Bal du moulin de la Galette
    "village_street_auvers": "board22_0.qml",  # van Gogh, Village Street in Auvers
    "harvesters": "board17_0.qml",         # Bruegel, The Harvesters
}


def read_rcc(path: str) -> dict[str, bytes]:
    """Every file in a Qt .rcc resource file: {"/dir/name": contents}."""
    with open(path, "rb") as fh:
        blob = fh.read()
    magic, version, tree, data, names = struct.unpack_from(">4sIIII", blob, 0)
    if magic != b"qres" or version not in (1, 2, 3):
        raise SystemExit(f"{path}: not a Qt rcc file of version 1-3 (magic {magic!r}, version {version})")
    entry_size = 14 if version == 1 else 22

    def name(offset: int) -> str:
        (length,) = struct.unpack_from(">H", blob, names + offset)
        start = names + offset + 6  # after length and hash
        return blob[start:start + 2 * length].decode("utf-16-be")

    files: dict[str, bytes] = {}

    def walk(index: int, prefix: str) -> None:
        at = tree + index * entry_size
        name_offset, flags = struct.unpack_from(">IH", blob, at)
        node = "" if index == 0 else prefix + "/" + name(name_offset)
        if flags & FLAG_DIR:
            count, first = struct.unpack_from(">II", blob, at + 6)
            for child in range(first, first + count):
                walk(child, node)
            return
        (offset,) = struct.unpack_from(">I", blob, at + 10)
        (length,) = struct.unpack_from(">I", blob, data + offset)
        payload = blob[data + offset + 4:data + offset + 4 + length]
        if flags & FLAG_ZLIB:
            payload = zlib.decompress(payload[4:])  # skip Qt's unpacked-length prefix
        elif flags & FLAG_ZSTD:
            raise SystemExit(f"{path}: {node} is zstd-compressed, which this tool does not read")
        files[node] = payload

    walk(0, "")
    return files


def parse_board(qml: str) -> tuple[str, tuple[int, int], list[tuple[str, float, float]]]:
    """A board*.qml's caption, background size (w, h) in px and pieces [(image, x, y)].

    Each piece's x, y is the position of its CENTRE as a fraction of the background's width
    and height (GCompris's drag-and-drop activities place pieces that way)."""
    caption = re.search(r'instruction:\s*qsTr\("([^"]*)"\)', qml)
    size = re.search(r'"width"\s*:\s*(\d+),\s*"height"\s*:\s*(\d+)', qml)
    pieces = re.findall(r'"pixmapfile"\s*:\s*"([^"]+\.webp)",\s*'
                        r'"x"\s*:\s*"([\d.]+)",\s*"y"\s*:\s*"([\d.]+)"', qml)
    if not (caption and size and pieces):
        raise ValueError("not a paintings board (no instruction, background size or pieces)")
    return (caption.group(1), (int(size.group(1)), int(size.group(2))),
            [(name, float(x), float(y)) for name, x, y in pieces])


MIN_OVERLAP = 50  # px two pieces must share at the board's position to count as neighbours


def overlap_rms(a: np.ndarray, b: np.ndarray, offset: tuple[int, int]) -> tuple[int, float]:
    """How many pixels RGBA pieces `a` (top-left at 0, 0) and `b` (top-left at `offset`
    = (x, y) px) both cover, and the RMS difference of their colours there (0-255)."""
    ox, oy = offset
    x0, x1 = max(0, ox), min(a.shape[1], ox + b.shape[1])
    y0, y1 = max(0, oy), min(a.shape[0], oy + b.shape[0])
    if x0 >= x1 or y0 >= y1:
        return 0, 0.0
    pa = a[y0:y1, x0:x1]
    pb = b[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    both = (pa[..., 3] > 0) & (pb[..., 3] > 0)
    if not both.any():
        return 0, 0.0
    diff = pa[..., :3][both] - pb[..., :3][both]
    return int(both.sum()), float(np.sqrt((diff ** 2).mean()))


def fit_corners(arrays: list[np.ndarray], corners: list[tuple[int, int]],
                nudge: int = 2) -> tuple[list[tuple[int, int]], list[tuple[float, float]]]:
    """Top-left corners where neighbouring pieces' shared pixels agree.

    GCompris's jigsaw pieces overlap their neighbours by a pixel or two (the same painting
    pixels on both), but the boards give positions only to 1/1000 of the background, so
    rounded positions put some pieces a pixel off, which shows as doubled edges. For each
    pair of overlapping pieces this finds the relative shift (up to `nudge` px) where their
    shared pixels agree best, then places the pieces along the most confident pairs (a
    minimum spanning tree on that disagreement). Pieces that overlap nothing (rectangular
    tiles that only abut) keep the board's positions.
    Returns the corners and, per neighbouring pair, the RMS disagreement before and after."""
    n = len(arrays)
    best: dict[tuple[int, int], tuple[float, tuple[int, int]]] = {}
    for i in range(n):
        for j in range(i + 1, n):
            base = (corners[j][0] - corners[i][0], corners[j][1] - corners[i][1])
            if overlap_rms(arrays[i], arrays[j], base)[0] < MIN_OVERLAP:
                continue
            shifts = [(base[0] + dx, base[1] + dy)
                      for dy in range(-nudge, nudge + 1) for dx in range(-nudge, nudge + 1)]
            scored = [(overlap_rms(arrays[i], arrays[j], o), o) for o in shifts]
            rms, offset = min((r, o) for (m, r), o in scored if m >= MIN_OVERLAP)
            best[(i, j)] = (rms, offset)
    fitted = list(corners)
    placed = {min(i for pair in best for i in pair)} if best else set(range(n))
    while True:  # Prim's algorithm: attach the unplaced piece with the most trusted join
        edges = [(rms, i, j, off) for (i, j), (rms, off) in best.items()
                 if (i in placed) != (j in placed)]
        if not edges:
            break
        rms, i, j, (ox, oy) = min(edges)
        if i in placed:
            fitted[j] = (fitted[i][0] + ox, fitted[i][1] + oy)
            placed.add(j)
        else:
            fitted[i] = (fitted[j][0] - ox, fitted[j][1] - oy)
            placed.add(i)
    if len(placed) < n:
        raise ValueError("some pieces overlap no neighbour while others do: cannot fit them")

    def rms_at(c: list[tuple[int, int]], i: int, j: int) -> float:
        return overlap_rms(arrays[i], arrays[j], (c[j][0] - c[i][0], c[j][1] - c[i][1]))[1]

    joins = [(rms_at(corners, i, j), rms_at(fitted, i, j)) for i, j in best]
    return fitted, joins


def assemble(pieces: list[Image.Image], centres: list[tuple[float, float]],
             nudge: int = 2) -> tuple[Image.Image, list[tuple[float, float]]]:
    """Paste RGBA `pieces` with their centres near `centres` (px, fitted by `fit_corners`);
    returns the whole painting (RGB, cropped to the largest rectangle with every pixel
    covered) and the joins' disagreement before/after the fit.
    Raises ValueError when a hole remains inside the painting."""
    arrays = [np.asarray(p, dtype=np.float64) for p in pieces]
    pad = nudge + 2
    rounded = [(pad + round(cx - p.width / 2), pad + round(cy - p.height / 2))
               for p, (cx, cy) in zip(pieces, centres)]
    corners, joins = fit_corners(arrays, rounded, nudge)
    x_min = min(x for x, _ in corners) - pad
    y_min = min(y for _, y in corners) - pad
    corners = [(x - x_min, y - y_min) for x, y in corners]
    size = (max(x + p.width for p, (x, _) in zip(pieces, corners)) + pad,
            max(y + p.height for p, (_, y) in zip(pieces, corners)) + pad)
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    for piece, corner in zip(pieces, corners):
        canvas.alpha_composite(piece, corner)
    # Shave border rows/columns (the outer edge is ragged by a pixel) until all is covered,
    # each time the edge line with the most holes, so a ragged column does not eat rows.
    hole = np.asarray(canvas)[..., 3] == 0
    ys, xs = np.nonzero(~hole)
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    while True:
        edges = {"top": hole[top, left:right].mean(), "bottom": hole[bottom - 1, left:right].mean(),
                 "left": hole[top:bottom, left].mean(), "right": hole[top:bottom, right - 1].mean()}
        worst = max(edges, key=lambda k: edges[k])
        if edges[worst] == 0:
            break
        top, bottom = top + (worst == "top"), bottom - (worst == "bottom")
        left, right = left + (worst == "left"), right - (worst == "right")
        if bottom - top < 0.97 * (ys.max() - ys.min()) or right - left < 0.97 * (xs.max() - xs.min()):
            raise ValueError("the pieces leave holes inside the painting")
    return canvas.crop((left, top, right, bottom)).convert("RGB"), joins


def shave_scan_border(image: Image.Image, most: int = 4, factor: float = 2.5) -> tuple[Image.Image, dict[str, int]]:
    """Drop up to `most` edge rows/columns per side that are the scan's border, not the
    painting: an edge line whose colours jump from the line inside it by more than `factor`
    times the painting's typical jump between neighbouring lines (a white or black rim)."""
    a = np.asarray(image, dtype=np.float64)
    typical = min(np.median(np.abs(np.diff(a, axis=0)).mean(axis=(1, 2))),
                  np.median(np.abs(np.diff(a, axis=1)).mean(axis=(0, 2))))
    shaved = {"top": 0, "bottom": 0, "left": 0, "right": 0}
    top, bottom, left, right = 0, a.shape[0], 0, a.shape[1]

    def jump(line: np.ndarray, inner: np.ndarray) -> float:
        return float(np.abs(line - inner).mean())

    for _ in range(most):
        for side in shaved:
            region = a[top:bottom, left:right]
            line, inner = {"top": (region[0], region[1]), "bottom": (region[-1], region[-2]),
                           "left": (region[:, 0], region[:, 1]),
                           "right": (region[:, -1], region[:, -2])}[side]
            if shaved[side] < most and jump(line, inner) > factor * typical:
                shaved[side] += 1
                top, bottom = top + (side == "top"), bottom - (side == "bottom")
                left, right = left + (side == "left"), right - (side == "right")
    return image.crop((left, top, right, bottom)), shaved


def downscale(image: Image.Image, longest: int = LONGEST_SIDE) -> Image.Image:
    scale = longest / max(image.size)
    if scale >= 1:
        return image
    size = (round(image.width * scale), round(image.height * scale))
    return image.resize(size, Image.Resampling.LANCZOS)


def _joins_summary(joins: list[tuple[float, float]]) -> str:
    if not joins:
        return "tiles abut without overlapping (board positions used as they are)"
    before, after = zip(*joins)
    return (f"{len(joins)} overlapping joins, RMS colour difference in the overlaps "
            f"mean {np.mean(before):.1f} worst {max(before):.1f} at the board's rounded "
            f"positions -> mean {np.mean(after):.1f} worst {max(after):.1f} fitted")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rcc")
    parser.add_argument("out_dir", nargs="?")
    parser.add_argument("--list", action="store_true", help="list the rcc's files and stop")
    args = parser.parse_args(argv)
    files = read_rcc(args.rcc)
    if args.list or not args.out_dir:
        for path, payload in sorted(files.items()):
            print(f"{len(payload):9d}  {path}")
        return 0
    os.makedirs(args.out_dir, exist_ok=True)
    for key, board in PAINTINGS.items():
        caption, (bg_w, bg_h), placed = parse_board(files[BOARDS + board].decode("utf-8"))
        pieces = [Image.open(io.BytesIO(files[IMAGES + name])).convert("RGBA")
                  for name, _, _ in placed]
        whole, joins = assemble(pieces, [(x * bg_w, y * bg_h) for _, x, y in placed])
        whole, shaved = shave_scan_border(whole)
        out = os.path.join(args.out_dir, f"{key}.jpg")
        small = downscale(whole)
        small.save(out + ".part", format="JPEG", quality=JPEG_QUALITY, optimize=True)
        os.replace(out + ".part", out)  # never a half-written painting on the shelf
        print(f"{out}: {caption!r}, {len(pieces)} pieces from {board} -> {whole.width}x"
              f"{whole.height}, {_joins_summary(joins)}, scan border shaved "
              f"{', '.join(f'{k} {v}' for k, v in shaved.items() if v) or 'none'}, "
              f"saved {small.width}x{small.height}, {os.path.getsize(out) // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
