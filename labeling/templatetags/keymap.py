"""`{% key_map "grid" keys %}`: the page's key list (labeling/keys.py) as the JSON block that
static/curator/keys.js shows on `?` and the page's script binds."""

from django import template
from django.utils.html import json_script

from labeling.keys import page_keys

register = template.Library()


@register.simple_tag
def key_map(page: str = "", class_keys: dict | None = None):
    return json_script(page_keys(page, class_keys), "page-keys")


@register.filter
def param(values: dict, name: str):
    """`{{ flt.values|param:"m_race" }}`: a filter's value by a built name ("" when unset)."""
    value = (values or {}).get(name)
    return "" if value is None else value


@register.filter
def prefixed(prefix: str, name: str) -> str:
    """`{{ "m_"|prefixed:column.name }}`."""
    return f"{prefix}{name}"


@register.simple_tag
def key_hint(page: str, class_keys: dict | None = None):
    """The one-line key hint some pages show above their faces, from the same registry."""
    from django.utils.html import format_html, format_html_join

    rows = [r for r in page_keys(page, class_keys)["rows"] if r["key"] not in ("Esc",)]
    return format_html(
        '<div class="keys card" id="keyhelp"><b>Keys</b> {}</div>',
        format_html_join(" ", "<span><kbd>{}</kbd> {}</span>", ((r["key"], r["text"]) for r in rows)),
    )


@register.simple_tag
def reserved_keys() -> str:
    """The keys a class may not have, with what they do (for the key settings)."""
    from labeling.keys import reserved_text

    return reserved_text()
