from django.db import migrations


class Migration(migrations.Migration):
    """The admin's "Import batchs" becomes "Import batches" (an option only, no change in the database)."""

    dependencies = [
        ("curator", "0004_face_label_single_index"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="importbatch",
            options={"ordering": ["-created_at"], "verbose_name_plural": "import batches"},
        ),
    ]
