"""FaceDescriptor moved to the `embeddings` app. Only Django's idea of the model changes here: the
table `training_facedescriptor` and its rows stay, and embeddings/0001 takes the model over."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("training", "0004_outoffoldrun_started_at")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="FaceDescriptor")],
            database_operations=[],
        )
    ]
