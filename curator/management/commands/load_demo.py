"""manage.py load_demo: import the committed fixture faces (tests/fixtures/faces: UTKFace crops
named by label, LFW photos in folders per gender) as a small demo dataset, so a new user sees the
whole flow: import report, alignment progress, labelled faces."""

import sys

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand

from curator.models import Dataset
from curator.services import datasets, imports

DEMO_NAME = "Demo faces"


class Command(BaseCommand):
    help = "Create the 'Demo faces' dataset from the committed fixture faces and align it."

    def add_arguments(self, parser):
        parser.add_argument("--if-empty", action="store_true", help="Only when there is no dataset yet.")
        parser.add_argument("--ask", action="store_true", help="Ask first (skipped when not on a terminal).")

    def handle(self, *args, if_empty: bool, ask: bool, **options):
        if if_empty and Dataset.objects.exists():
            return
        if Dataset.objects.filter(name=DEMO_NAME).exists():
            self.stdout.write(f"The dataset “{DEMO_NAME}” exists already.")
            return
        if ask:
            if not sys.stdin.isatty():
                self.stdout.write("No datasets yet: `manage.py load_demo` imports a small demo dataset.")
                return
            answer = input("No datasets yet. Load a demo dataset of 41 faces? [Y/n] ").strip().lower()
            if answer not in ("", "y", "yes"):
                return
        owner = User.objects.filter(is_superuser=True).order_by("pk").first()
        dataset = datasets.dataset_create(
            user=owner, name=DEMO_NAME, classes=["female", "male"], description="41 faces from UTKFace and LFW."
        )
        folder = settings.BASE_DIR / "tests" / "fixtures" / "faces"
        batch = imports.import_server_folder(dataset=dataset, path=str(folder), user=owner, check_roots=False)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo dataset “{DEMO_NAME}”: {batch.imported_count} photos imported, alignment queued "
                f"(see http://127.0.0.1:8000/datasets/{dataset.pk}/)."
            )
        )
