"""FaceDescriptor holds features of the original photo (dlib's own chip, its mirror, the pretrained
network) instead of a descriptor of the aligned crop: the old rows are dropped (computed again on
first use). New architectures, and cancelled jobs keep no version unless asked."""

from django.db import migrations, models


def drop_crop_descriptors(apps, schema_editor):
    apps.get_model("training", "FaceDescriptor").objects.all().delete()


ARCHITECTURES = [
    ("embedding", "embedding (dlib descriptor of the photo + linear or dense head, default)"),
    ("pretrained", "pretrained (dlib-models' CC0 gender network, no training)"),
    ("ensemble", "ensemble (average or stack of other versions)"),
    ("cnn", "cnn (batch-norm CNN trained from scratch on the crops)"),
    ("seed-cnn", "seed-cnn (the original scripts' small CNN)"),
]


class Migration(migrations.Migration):
    dependencies = [("training", "0002_training_job_phase")]

    operations = [
        migrations.RunPython(drop_crop_descriptors, migrations.RunPython.noop),
        migrations.RemoveField(model_name="facedescriptor", name="crop"),
        migrations.AddField(
            model_name="facedescriptor",
            name="vector_flipped",
            field=models.BinaryField(default=b"", help_text="128 float32 values: descriptor of the mirrored chip."),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="facedescriptor",
            name="pretrained",
            field=models.BinaryField(
                null=True,
                help_text="2 float32 values, female/male, of the pretrained network (null: it was unavailable).",
            ),
        ),
        migrations.AddField(
            model_name="facedescriptor",
            name="method",
            field=models.CharField(
                default="", max_length=64, help_text="How it was computed (rows of another method are redone)."
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="facedescriptor",
            name="source",
            field=models.CharField(
                default="", max_length=600, help_text="Photo path and landmark box (stale if they differ)."
            ),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="facedescriptor",
            name="vector",
            field=models.BinaryField(help_text="128 float32 values: descriptor of dlib's 150-px chip."),
        ),
        migrations.AlterField(
            model_name="trainingjob",
            name="architecture",
            field=models.CharField(choices=ARCHITECTURES, default="embedding", max_length=16),
        ),
        migrations.AlterField(
            model_name="trainingjob",
            name="keep_best_on_cancel",
            field=models.BooleanField(default=False),
        ),
        migrations.AlterField(
            model_name="modelversion",
            name="architecture",
            field=models.CharField(choices=ARCHITECTURES, max_length=16),
        ),
        migrations.AlterField(
            model_name="modelversion",
            name="artifact",
            field=models.CharField(
                blank=True, max_length=500, help_text="Storage path of the .keras file (none for pretrained and ensemble)."
            ),
        ),
    ]
