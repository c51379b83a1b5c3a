from django.db import migrations, models


class Migration(migrations.Migration):
    """BulkAction.Kind gains "not_a_face" (choices only: no change in the database)."""

    dependencies = [
        ("labeling", "0002_move_reviewdecision_to_review"),
    ]

    operations = [
        migrations.AlterField(
            model_name="bulkaction",
            name="kind",
            field=models.CharField(
                choices=[
                    ("label", "Set label"),
                    ("unsure", "Mark unsure"),
                    ("exclude", "Exclude"),
                    ("include", "Include"),
                    ("split", "Assign split"),
                    ("rule", "Exclusion rule"),
                    ("auto_split", "Automatic split"),
                    ("deduplicate", "Keep one of duplicates"),
                    ("review", "Model review"),
                    ("not_a_face", "Not a face"),
                    ("undo", "Undo"),
                    ("revert", "Revert"),
                ],
                max_length=16,
            ),
        ),
    ]
