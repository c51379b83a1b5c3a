"""FaceDescriptor, moved here from `training`. The table (`training_facedescriptor`) keeps its
name, rows and constraints: this migration only tells Django the model is embeddings' now, and
renames the content type so admin permissions follow it."""

import django.db.models.deletion
from django.db import migrations, models


def content_type_move(apps, schema_editor, *, old: str, new: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    ContentType.objects.using(db).filter(app_label=old, model="facedescriptor").update(app_label=new)


def forwards(apps, schema_editor):
    content_type_move(apps, schema_editor, old="training", new="embeddings")


def backwards(apps, schema_editor):
    content_type_move(apps, schema_editor, old="embeddings", new="training")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("curator", "0001_initial"),
        # The model leaves training's state there; the table itself was created by training's migrations.
        ("training", "0005_move_facedescriptor_to_embeddings"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="FaceDescriptor",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("vector", models.BinaryField(help_text="128 float32 values: descriptor of dlib's 150-px chip.")),
                        (
                            "vector_flipped",
                            models.BinaryField(help_text="128 float32 values: descriptor of the mirrored chip."),
                        ),
                        (
                            "pretrained",
                            models.BinaryField(
                                help_text="2 float32 values, female/male, of the pretrained network (null: it was unavailable).",
                                null=True,
                            ),
                        ),
                        (
                            "method",
                            models.CharField(
                                help_text="How it was computed (rows of another method are redone).", max_length=64
                            ),
                        ),
                        (
                            "source",
                            models.CharField(help_text="Photo path and landmark box (stale if they differ).", max_length=600),
                        ),
                        (
                            "face",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE, related_name="descriptor", to="curator.face"
                            ),
                        ),
                    ],
                    options={"db_table": "training_facedescriptor"},
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(forwards, backwards),
    ]
