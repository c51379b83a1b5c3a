"""One colour per class everywhere (issue 20): one colour-blind-safe palette, in Python for the
plots and in CSS for the pages, the two the same; readable badge text; classes coloured by their
place in the dataset's class list."""

import re
from pathlib import Path

from curator.colours import CLASS_PALETTE, CLASS_TEXT, class_colour, class_css

CSS = (Path(__file__).resolve().parents[2] / "static" / "curator" / "curator.css").read_text()


def _rgb(hex_colour: str) -> tuple[float, float, float]:
    h = hex_colour.lstrip("#")
    return tuple(int(h[i : i + 2], 16) / 255 for i in (0, 2, 4))


def _linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _luminance(hex_colour: str) -> float:
    r, g, b = (_linear(c) for c in _rgb(hex_colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


# Machado, Oliveira and Fernandes (2009), severity 1.0, on linear RGB.
SIMULATIONS = {
    "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]],
    "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]],
    "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]],
}


def _seen(hex_colour: str, matrix) -> tuple[float, ...]:
    linear = [_linear(c) for c in _rgb(hex_colour)]
    return tuple(min(1.0, max(0.0, sum(m * c for m, c in zip(row, linear, strict=True)))) for row in matrix)


def test_the_css_custom_properties_are_the_python_palette():
    for i, (colour, text) in enumerate(zip(CLASS_PALETTE, CLASS_TEXT, strict=True)):
        assert re.search(rf"--class-{i}:\s*{colour}\b", CSS, re.I), f"--class-{i} is not {colour}"
        assert re.search(rf"--class-{i}-text:\s*{text}\b", CSS, re.I), f"--class-{i}-text is not {text}"
        assert f".badge.c{i} {{ background:var(--class-{i}); color:var(--class-{i}-text); }}" in CSS


def test_badge_text_is_readable_on_every_class_colour():
    for colour, text in zip(CLASS_PALETTE, CLASS_TEXT, strict=True):
        assert _contrast(colour, text) >= 4.5, (colour, text, _contrast(colour, text))


def _apart(a: str, b: str) -> float:
    """The smallest distance between two colours as the three forms of colour blindness see them."""
    return min(
        sum((x - y) ** 2 for x, y in zip(_seen(a, m), _seen(b, m), strict=True)) ** 0.5 for m in SIMULATIONS.values()
    )


def test_the_classes_stay_apart_for_colour_blind_eyes():
    """female/male (the first two classes) stay far apart under simulated protanopia,
    deuteranopia and tritanopia, and no two of the eight colours collapse into one (the closest,
    blue and bluish green under tritanopia, still differ in lightness)."""
    assert _apart(CLASS_PALETTE[0], CLASS_PALETTE[1]) > 0.6
    for a in range(len(CLASS_PALETTE)):
        for b in range(a + 1, len(CLASS_PALETTE)):
            assert _apart(CLASS_PALETTE[a], CLASS_PALETTE[b]) > 0.1, (CLASS_PALETTE[a], CLASS_PALETTE[b])


def test_a_class_is_coloured_by_its_place_in_the_dataset_class_list():
    assert class_colour(["female", "male"], "female") == "#E69F00"
    assert class_colour(["female", "male"], "male") == "#0072B2"
    assert class_colour(["male", "female"], "male") == "#E69F00"  # derived from the list, not the name
    assert class_css(["a", "b"], "b") == "c1" and class_css(["a"], "") == "none" and class_css(["a"], "zzz") == "c9"
    assert class_css([f"k{i}" for i in range(10)], "k9") == "c1"  # past 8 classes the palette wraps


def test_no_page_keeps_colours_of_its_own_for_classes():
    """The old per-page colours (grid pink/blue, predict boxes, map's Tableau for labels) are gone."""
    static = Path(__file__).resolve().parents[2] / "static"
    for old in ("#fce7f6", "#9e165f", "#c11574", "#3538cd", "#2d31a6"):
        for path in static.rglob("*.css"):
            assert old not in path.read_text().lower(), (old, path)


def test_the_confusion_matrix_marks_each_class_with_its_colour():
    from training import plots

    svg = plots.confusion_svg([[3, 1], [0, 4]], ["female", "male"], colours=["#E69F00", "#0072B2"]).decode()
    assert "#e69f00" in svg.lower() and "#0072b2" in svg.lower()
