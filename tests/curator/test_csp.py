"""A strict Content-Security-Policy on every page: scripts and styles only from our static files,
no inline script, handler or style anywhere in our templates (the browser tests run every page
under the policy and fail on any refusal: tests/browser/conftest.py, tests/browser/test_csp.py)."""

import re
from pathlib import Path

import pytest

from tests.labeling.factories import make_faces
from tests.training.test_drilldown_links import build_version
from training import plots

TEMPLATES = Path(__file__).parents[2] / "templates"
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/(?:ld\+)?json)[^>]*>", re.I)
HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.I)
STYLE = re.compile(r"<style\b|\sstyle\s*=", re.I)


def policy(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.strip() for part in header.split(";") if part.strip()}


@pytest.fixture
def version(dataset):
    make_faces(dataset, 40, labels=["female", "male"])
    return build_version(dataset)


def test_every_page_has_the_strict_policy(client, alice_client, admin_user, dataset, version):
    from tests.conftest import logged_in_client

    pages = [
        (client, "/accounts/login/"),
        (alice_client, "/"),
        (alice_client, f"/datasets/{dataset.pk}/"),
        (alice_client, f"/datasets/{dataset.pk}/import/"),
        (alice_client, f"/labeling/{dataset.pk}/"),
        (alice_client, f"/labeling/{dataset.pk}/curate/"),
        (alice_client, f"/training/versions/{version.pk}/"),
        (alice_client, "/api/v1/docs/"),
        (alice_client, "/no/such/page/"),
        (logged_in_client(admin_user), "/admin/"),
    ]
    for who, url in pages:
        response = who.get(url)
        assert response.status_code in (200, 404), url
        directives = policy(response)
        assert directives["script-src"] == "script-src 'self'", url
        assert directives["style-src"] == "style-src 'self'", url
        assert directives["object-src"] == "object-src 'none'" and directives["frame-ancestors"], url
        assert "unsafe" not in response["Content-Security-Policy"], url


def test_media_files_keep_their_own_stricter_policy(alice_client, dataset):
    face = make_faces(dataset, 1)[0]
    response = alice_client.get(f"/media/{face.crop}")
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"


def test_no_template_has_inline_script_handlers_or_styles():
    found = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        text = path.read_text()
        for pattern in (INLINE_SCRIPT, HANDLER, STYLE):
            found += [f"{path.relative_to(TEMPLATES)}: {m.group(0)}" for m in pattern.finditer(text)]
    assert found == []


def test_the_plots_pages_inline_carry_no_style_attribute_or_element():
    svg = plots.confusion_svg([[1, 2], [3, 4]], ["female", "male"], link=lambda i, j: "/x").decode()
    assert not STYLE.search(svg)
    assert 'fill="#ffffff"' in svg and 'stroke-linejoin="round"' in svg  # the styling is still there
