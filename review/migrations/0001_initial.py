"""ReviewDecision, moved here from `labeling`. The table (`labeling_reviewdecision`, created by
labeling/0001) keeps its name, rows, constraints and indexes: this migration only tells Django
the model is review's now, and renames the content type so admin permissions follow it."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def content_type_move(apps, schema_editor, *, old: str, new: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    ContentType.objects.using(db).filter(app_label=old, model="reviewdecision").update(app_label=new)


def forwards(apps, schema_editor):
    content_type_move(apps, schema_editor, old="labeling", new="review")


def backwards(apps, schema_editor):
    content_type_move(apps, schema_editor, old="review", new="labeling")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("curator", "0001_initial"),
        ("labeling", "0002_move_reviewdecision_to_review"),
        ("training", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ReviewDecision",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        (
                            "decision",
                            models.CharField(
                                choices=[
                                    ("accepted", "Accepted the model's label"),
                                    ("confirmed", "Confirmed the human label"),
                                    ("excluded", "Excluded"),
                                    ("unsure", "Marked unsure"),
                                ],
                                max_length=16,
                            ),
                        ),
                        ("label_before", models.CharField(blank=True, max_length=64)),
                        ("label_after", models.CharField(blank=True, max_length=64)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "face",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="review_decisions",
                                to="curator.face",
                            ),
                        ),
                        (
                            "model_version",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="review_decisions",
                                to="training.modelversion",
                            ),
                        ),
                        (
                            "out_of_fold_run",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="review_decisions",
                                to="training.outoffoldrun",
                            ),
                        ),
                        (
                            "user",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "labeling_reviewdecision",
                        "ordering": ["-created_at"],
                        "indexes": [
                            models.Index(fields=["model_version", "face"], name="labeling_re_model_v_3a6e4e_idx"),
                            models.Index(fields=["out_of_fold_run", "face"], name="labeling_re_out_of__bf10ba_idx"),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(forwards, backwards),
    ]
