"""manage.py cleanup_orphan_crops [--dry-run] [--grace-seconds N]: what Celery beat runs every
CURATOR_ORPHAN_CROP_SWEEP_SECONDS, by hand (e.g. to see first what it would delete)."""

from django.core.management.base import BaseCommand

from curator.services.storage_cleanup import orphan_crops_delete


class Command(BaseCommand):
    help = "Delete aligned crop files that no face refers to and that are older than the grace period."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Only count what would be deleted.")
        parser.add_argument(
            "--grace-seconds", type=int, default=None, help="Default: CURATOR_ORPHAN_CROP_GRACE_SECONDS."
        )

    def handle(self, *args, dry_run: bool, grace_seconds: int | None, **options):
        report = orphan_crops_delete(grace_seconds=grace_seconds, dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(
            f"{report.scanned} crop files: {report.referenced} in use, {report.too_new} too new to judge, "
            f"{verb} {report.deleted}"
            + (f", {report.failed} could not be deleted" if report.failed else "")
            + (f"; {verb} {report.gone_dataset_files} files of deleted datasets" if report.gone_dataset_files else "")
            + "."
        )
