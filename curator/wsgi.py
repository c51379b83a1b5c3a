"""The WSGI application (gunicorn, runserver). Models are warmed in the background as the process
starts (curator/warmup.py), so the first prediction does not pay for loading them."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "curator.settings")
application = get_wsgi_application()

from curator.warmup import warm_in_background  # noqa: E402  (needs the settings configured above)

# The thread (None when CURATOR_WARM_AT_START is off), for whoever wants to wait until it is warm.
warm_up = warm_in_background({"web"})
