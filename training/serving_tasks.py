"""Celery tasks of the predict and review side (out-of-fold runs); see training/serving.py and
training/out_of_fold.py. Thin: take ids, call a service."""

from celery import shared_task


# Routed to the `train` queue (settings.CELERY_TASK_ROUTES): it trains Keras models, one at a
# time with the other training jobs.
@shared_task(name="training.serving_tasks.out_of_fold_run_task", acks_late=True)
def out_of_fold_run_task(run_id: int) -> None:
    from training.out_of_fold import out_of_fold_run_execute

    out_of_fold_run_execute(run_id=run_id)
