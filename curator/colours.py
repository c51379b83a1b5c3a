"""One colour per class, everywhere (issue 20): the grid, the map, the plots, the predict page and
the review queues colour a class by its position in the dataset's class list, from one
colour-blind-safe palette.

The palette is Okabe and Ito's (Color Universal Design, 2008), made to stay distinct under the
common forms of colour blindness (protanopia, deuteranopia, tritanopia); female/male, the
default classes, get its orange and blue, a pair that stays apart for every form. The browser
reads the same colours from the CSS custom properties `--class-<i>` (static/curator/curator.css,
held equal to this list by tests/curator/test_class_colours.py), the plots from here.

    class_colour(classes, "male")   # "#0072B2"
    class_css(classes, "male")      # "c1": the CSS class of badges, boxes and map points
"""

from __future__ import annotations

# Okabe-Ito: orange, blue, bluish green, reddish purple, vermillion, sky blue, yellow, black.
CLASS_PALETTE = ["#E69F00", "#0072B2", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000"]
# Text on a filled badge of that colour, whichever of black and white contrasts more (WCAG).
CLASS_TEXT = ["#000000", "#FFFFFF", "#000000", "#000000", "#000000", "#000000", "#000000", "#FFFFFF"]
# A label that is not one of the dataset's classes (a version trained before a class was renamed).
OTHER = "#98A2B3"


def class_index(classes, label: str) -> int | None:
    """The palette index of a class: its position in the class list (wrapping after 8)."""
    classes = list(classes)
    if label not in classes:
        return None
    return classes.index(label) % len(CLASS_PALETTE)


def class_colour(classes, label: str) -> str:
    index = class_index(classes, label)
    return OTHER if index is None else CLASS_PALETTE[index]


def class_css(classes, label: str) -> str:
    """ "c<i>" for a class, "c9" for a label outside the list, "none" without a label."""
    if not label:
        return "none"
    index = class_index(classes, label)
    return "c9" if index is None else f"c{index}"
