"""matplotlib as every server-side plot uses it: the Agg backend (no display), and text drawn as
plain text. Labels, class names and metadata values come from users and labels.csv; with
matplotlib's default `text.parse_math`, a value like `$\\frac{$` in a tick label is parsed as
mathtext and raises, which broke a version page for good. Import this module, not matplotlib's
pyplot, before building a Figure."""

import matplotlib

matplotlib.use("Agg")
# Every Text created from now on in this process is plain: `$` is a dollar sign.
matplotlib.rcParams["text.parse_math"] = False
