"""matplotlib as every server-side plot uses it: the Agg backend (no display), and text drawn as
plain text. Labels, class names and metadata values come from users and labels.csv; with
matplotlib's default `text.parse_math`, a value like `$\\frac{$` in a tick label is parsed as
mathtext and raises, which broke a version page for good. Import this module, not matplotlib's
pyplot, before building a Figure."""

import re

import matplotlib

matplotlib.use("Agg")
# Every Text created from now on in this process is plain: `$` is a dollar sign.
matplotlib.rcParams["text.parse_math"] = False

# One CSS declaration of a style="" attribute: `fill: #1f77b4`.
_DECLARATION = re.compile(r"\s*([a-z-]+)\s*:\s*(.+?)\s*$")
# Inside a tag only (text content is escaped by matplotlib, so a tag never holds < or >).
_STYLE_ATTRIBUTE = re.compile(r'(<[a-zA-Z][^<>]*?) style="([^"]*)"')
_STYLE_ELEMENT = re.compile(r"<style[^>]*>(.*?)</style>", re.S)
_SVG_OPEN = re.compile(r"<svg\b")


def _as_attributes(css: str) -> str:
    pairs = (_DECLARATION.match(part) for part in css.split(";") if part.strip())
    return "".join(f' {m.group(1)}="{m.group(2)}"' for m in pairs if m)


def svg_presentation(svg: str) -> str:
    """matplotlib's SVG with its styling as SVG presentation attributes (`fill="#fff"`) instead
    of style="" attributes and a <style> element, which a Content-Security-Policy without
    'unsafe-inline' refuses on a page that inlines the SVG. matplotlib writes only properties
    that are presentation attributes too (fill, stroke, stroke-*, font-size, font-family,
    text-anchor, opacity...); its one stylesheet rule, `*{stroke-linejoin: round; stroke-linecap:
    butt}`, sets inherited properties, so it moves onto the root <svg> element."""
    rules = "".join(m.group(1) for m in _STYLE_ELEMENT.finditer(svg))
    root_attributes = "".join(_as_attributes(body) for body in re.findall(r"\{([^}]*)\}", rules))
    svg = _STYLE_ELEMENT.sub("", svg)
    svg = _SVG_OPEN.sub("<svg" + root_attributes, svg, count=1)
    return _STYLE_ATTRIBUTE.sub(lambda m: m.group(1) + _as_attributes(m.group(2)), svg)
