"""`{{ label|class_css:dataset.classes }}`: the CSS class that gives a label its class colour
(curator.colours), the same on every page."""

from django import template

from curator.colours import class_css as _class_css

register = template.Library()


@register.filter
def class_css(label: str, classes) -> str:
    return _class_css(classes or [], label or "")
