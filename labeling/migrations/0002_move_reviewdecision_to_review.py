"""ReviewDecision moved to the `review` app. Only Django's idea of the model changes here: the
table `labeling_reviewdecision` and its rows stay, and review/0001 takes the model over."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("labeling", "0001_initial")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="ReviewDecision")],
            database_operations=[],
        )
    ]
