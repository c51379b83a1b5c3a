"""Create the first admin account: password from CURATOR_ADMIN_PASSWORD, or generated and
printed once. Does nothing when a superuser exists."""

import os
import secrets

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the first admin (staff, superuser, curator) if there is none."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("CURATOR_ADMIN_USER", "admin"))

    def handle(self, *args, username: str, **options):
        from django.conf import settings

        Group.objects.get_or_create(name=settings.CURATOR_GROUP)
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("Log in with your existing admin account at http://127.0.0.1:8000/")
            return
        password = os.environ.get("CURATOR_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        shown = password if not os.environ.get("CURATOR_ADMIN_PASSWORD") else "(from CURATOR_ADMIN_PASSWORD)"
        self.stdout.write(self.style.SUCCESS(f"Created admin account. Log in as: {username} / {shown}"))
        if not os.environ.get("CURATOR_ADMIN_PASSWORD"):
            self.stdout.write("This password is shown only once; change it in the admin.")
