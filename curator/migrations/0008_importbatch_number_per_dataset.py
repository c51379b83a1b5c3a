from django.db import migrations, models


def number_per_dataset(apps, schema_editor):
    """Existing imports are numbered 1, 2, 3... within their dataset, oldest first."""
    ImportBatch = apps.get_model("curator", "ImportBatch")
    counters: dict[int, int] = {}
    for pk, dataset_id in ImportBatch.objects.order_by("dataset_id", "created_at", "pk").values_list(
        "pk", "dataset_id"
    ):
        counters[dataset_id] = counters.get(dataset_id, 0) + 1
        ImportBatch.objects.filter(pk=pk).update(number=counters[dataset_id])


class Migration(migrations.Migration):
    dependencies = [
        ("curator", "0007_importbatch_label_sources"),
    ]

    operations = [
        migrations.AddField(
            model_name="importbatch",
            name="number",
            field=models.PositiveIntegerField(editable=False, null=True),
        ),
        migrations.RunPython(number_per_dataset, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="importbatch",
            name="number",
            field=models.PositiveIntegerField(editable=False),
        ),
        migrations.AddConstraint(
            model_name="importbatch",
            constraint=models.UniqueConstraint(fields=("dataset", "number"), name="unique_import_number"),
        ),
    ]
