"""Sheets of pictures drawn with Pillow alone: panels in rows with a title over each and a label
over each row. Fast enough to make one per photo and pages of hundreds of thumbnails (a figure
per photo in matplotlib costs about half a second)."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont, ImageOps

__all__ = ["grid"]

_GAP = 4


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or without FreeType: the bitmap font
        return ImageFont.load_default()


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text``, cut with an ellipsis so that it is at most ``width`` pixels wide."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def grid(panels: Sequence[Sequence[Image.Image | None]], titles: Sequence[Sequence[str]] | None = None,
         row_labels: Sequence[str] | None = None, panel_size: int = 260, font_size: int = 13) -> Image.Image:
    """Panels arranged in rows (e.g. one row per class, one column per method) on white, each
    scaled to fit a ``panel_size`` square, with a title over each panel and an optional label
    over each row; a ``None`` panel is left blank. When every row has the same titles they are
    drawn once, over the first row. Titles and labels too long for their space are cut with an
    ellipsis."""
    rows, cols = len(panels), max((len(row) for row in panels), default=0)
    square = (panel_size, panel_size)
    pictures = [[None if panel is None else ImageOps.contain(panel.convert("RGB"), square, Image.BILINEAR)
                 for panel in row] for row in panels]
    # cells as tall as the tallest picture: landscape photos leave no band of white above and below
    cell = max((picture.height for row in pictures for picture in row if picture is not None), default=panel_size)
    font = _font(font_size)
    line = font_size + 6
    shared = titles is not None and rows > 1 and all(list(t) == list(titles[0]) for t in titles)
    label_height = line if row_labels is not None else 0
    title_rows = [r == 0 or not shared for r in range(rows)] if titles is not None else [False] * rows
    heights = [label_height + line * titled + cell + _GAP for titled in title_rows]
    sheet = Image.new("RGB", (_GAP + cols * (panel_size + _GAP), _GAP + sum(heights)), "white")
    draw = ImageDraw.Draw(sheet)
    top = _GAP
    for r, row in enumerate(pictures):
        title_top = top + (0 if shared else label_height)  # shared titles head the sheet, above the first label
        label_top = top + (line if shared and r == 0 else 0)
        panel_top = top + label_height + line * title_rows[r]
        if row_labels is not None:
            draw.text((_GAP, label_top + 2), _fit_text(draw, row_labels[r], font, sheet.width - 2 * _GAP), fill="black",
                      font=font)
        for c, picture in enumerate(row):
            left = _GAP + c * (panel_size + _GAP)
            if title_rows[r] and titles[r][c]:
                text = _fit_text(draw, titles[r][c], font, panel_size)
                x = left + (panel_size - draw.textlength(text, font=font)) / 2
                draw.text((x, title_top + 2), text, fill="black", font=font)
            if picture is not None:
                offset = ((panel_size - picture.width) // 2, (cell - picture.height) // 2)
                sheet.paste(picture, (left + offset[0], panel_top + offset[1]))
        top += heights[r]
    return sheet
