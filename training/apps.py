from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Training"

    def ready(self) -> None:
        # Training plugs into the apps below it; they never import training.
        from labeling import extensions
        from labeling.signals import labels_changed
        from training import selectors

        labels_changed.connect(_labels_changed, dispatch_uid="training.predictions_disagrees_sync")
        # The active version follows the data: faces added or re-aligned get its predictions
        # (and so its suggestions) once their descriptors are there, with no button.
        from embeddings.signals import descriptors_computed

        descriptors_computed.connect(_descriptors_computed, dispatch_uid="training.predictions_follow")
        extensions.prediction_provider_register(selectors.PREDICTION_PROVIDER)
        # The grid's and the API's prediction filters (model, predicted, disagrees, confidence).
        from labeling.filters import register_face_filters
        from training.filters import PREDICTION_FILTERS

        register_face_filters(PREDICTION_FILTERS)
        from curator.warmup import warmer_register

        warmer_register(_active_versions_warm, roles={"web", "predict"})


def _active_versions_warm() -> None:
    """Every dataset's active model version, loaded and run once on a dummy face (the predict
    page and API use it; the predict queue predicts new faces with it)."""
    from training.serving import active_versions_warm

    active_versions_warm()


def _labels_changed(sender, *, face_ids, label, **kwargs) -> None:
    from training.services import predictions_disagrees_sync

    predictions_disagrees_sync(face_ids=face_ids, label=label)


def _descriptors_computed(sender, *, dataset_ids, face_ids, **kwargs) -> None:
    from training.services import predictions_follow_queue

    predictions_follow_queue(dataset_ids=dataset_ids, face_ids=face_ids)
