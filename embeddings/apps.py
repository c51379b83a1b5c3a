from django.apps import AppConfig


class EmbeddingsConfig(AppConfig):
    name = "embeddings"
    verbose_name = "Embeddings"

    def ready(self) -> None:
        # Embeddings plugs into curator's alignment; curator never imports embeddings.
        from curator.signals import faces_aligned

        faces_aligned.connect(_faces_aligned, dispatch_uid="embeddings.descriptors_queue")
        from django.db.models.signals import post_delete

        from curator.models import Face

        post_delete.connect(_face_deleted, sender=Face, dispatch_uid="embeddings.face_deleted_stamp")
        from curator.warmup import warmer_register

        warmer_register(_networks_warm, roles={"web", "embed", "predict"})


def _networks_warm() -> None:
    """The face network's session and the pretrained gender network, opened and run once."""
    from embeddings import network, pretrained

    network.warm()
    if pretrained.available()[0]:
        pretrained.session()


def _faces_aligned(sender, *, dataset_ids, face_ids, **kwargs) -> None:
    from embeddings.descriptors import descriptor_stamp_bump_on_commit
    from embeddings.services import descriptors_queue

    # New faces change the counts keyed by the stamp, and re-aligned faces' stored descriptors
    # are no longer current.
    for dataset_id in dataset_ids:
        descriptor_stamp_bump_on_commit(dataset_id)
    descriptors_queue(dataset_ids=dataset_ids, face_ids=face_ids)


def _face_deleted(sender, *, instance, **kwargs) -> None:
    """Faces deleted through the ORM (re-alignment, the admin): the indexes keyed by the descriptor
    stamp must drop them. A dataset's own deletion deletes in SQL and sends nothing."""
    from embeddings.descriptors import descriptor_stamp_bump_on_commit

    descriptor_stamp_bump_on_commit(instance.dataset_id)
