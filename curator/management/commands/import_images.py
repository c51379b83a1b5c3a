"""manage.py import_images DATASET PATH: import a server folder or a .zip into a dataset and
queue its alignment. Run by an operator, so any readable path is allowed (the web page is
limited to CURATOR_IMPORT_ROOTS)."""

from pathlib import Path

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from curator.models import Dataset
from curator.params import id_param
from curator.services import datasets, imports


class Command(BaseCommand):
    help = "Import a folder (recursively) or a .zip of photos into a dataset, then align them."

    def add_arguments(self, parser):
        parser.add_argument("dataset", help="Dataset name or id.")
        parser.add_argument("path", help="A folder or a .zip file on this machine.")
        parser.add_argument("--create", action="store_true", help="Create the dataset if it does not exist.")
        parser.add_argument("--classes", default="", help="Classes of a created dataset, e.g. female,male.")
        parser.add_argument("--user", default="", help="Username recorded as the importer.")

    def handle(self, *args, dataset: str, path: str, create: bool, classes: str, user: str, **options):
        target = self._dataset(dataset, create, classes)
        importer = User.objects.filter(username=user).first() if user else None
        source = Path(path)
        try:
            if source.is_file() and source.suffix.lower() == ".zip":
                batch = imports.import_zip_file(dataset=target, path=source, user=importer)
            else:
                batch = imports.import_server_folder(dataset=target, path=path, user=importer, check_roots=False)
        except imports.ImportRefused as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"{target.name}: {batch.imported_count} imported ({batch.labelled_count} labelled, "
            f"labels from {batch.get_label_layout_display()}), {batch.duplicate_count} duplicates, "
            f"{batch.skipped_count} skipped"
        )
        for issue in batch.issues.all()[:50]:
            self.stdout.write(f"  {issue.get_kind_display().lower()}: {issue.file_name}: {issue.reason}")
        job = batch.alignment_jobs.first()
        if job:
            self.stdout.write(f"Alignment job {job.pk} queued for {job.total} photos.")

    def _dataset(self, name: str, create: bool, classes: str) -> Dataset:
        dataset_id = id_param(name)
        found = Dataset.objects.filter(pk=dataset_id).first() if dataset_id is not None else None
        found = found or Dataset.objects.filter(name=name).first()
        if found:
            return found
        if not create:
            raise CommandError(f"No dataset named {name!r} (use --create to make it).")
        class_list = [c.strip() for c in classes.split(",") if c.strip()] or None
        return datasets.dataset_create(user=None, name=name, classes=class_list)
