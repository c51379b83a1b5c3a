from django.apps import AppConfig


class EmbeddingsConfig(AppConfig):
    name = "embeddings"
    verbose_name = "Embeddings"

    def ready(self) -> None:
        # Embeddings plugs into curator's alignment; curator never imports embeddings.
        from curator.signals import faces_aligned

        faces_aligned.connect(_faces_aligned, dispatch_uid="embeddings.descriptors_queue")


def _faces_aligned(sender, *, dataset_ids, face_ids, **kwargs) -> None:
    from embeddings.services import descriptors_queue

    descriptors_queue(dataset_ids=dataset_ids, face_ids=face_ids)
