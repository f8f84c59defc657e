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
    over each row; a ``None`` panel is left blank. Titles and labels too long for their space
    are cut with an ellipsis."""
    rows, cols = len(panels), max((len(row) for row in panels), default=0)
    font = _font(font_size)
    line = font_size + 6
    title_height = line if titles is not None else 0
    label_height = line if row_labels is not None else 0
    row_height = label_height + title_height + panel_size + _GAP
    sheet = Image.new("RGB", (_GAP + cols * (panel_size + _GAP), _GAP + rows * row_height), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(panels):
        top = _GAP + r * row_height
        if row_labels is not None:
            draw.text((_GAP, top + 2), _fit_text(draw, row_labels[r], font, sheet.width - 2 * _GAP), fill="black",
                      font=font)
        for c, panel in enumerate(row):
            left = _GAP + c * (panel_size + _GAP)
            if titles is not None and titles[r][c]:
                text = _fit_text(draw, titles[r][c], font, panel_size)
                x = left + (panel_size - draw.textlength(text, font=font)) / 2
                draw.text((x, top + label_height + 2), text, fill="black", font=font)
            if panel is not None:
                picture = ImageOps.contain(panel.convert("RGB"), (panel_size, panel_size), Image.BILINEAR)
                offset = ((panel_size - picture.width) // 2, (panel_size - picture.height) // 2)
                sheet.paste(picture, (left + offset[0], top + label_height + title_height + offset[1]))
    return sheet
