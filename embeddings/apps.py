from django.apps import AppConfig


class EmbeddingsConfig(AppConfig):
    name = "embeddings"
    verbose_name = "Embeddings"

    def ready(self) -> None:
        # Embeddings plugs into curator's alignment; curator never imports embeddings.
        from curator.signals import faces_aligned

        faces_aligned.connect(_faces_aligned, dispatch_uid="embeddings.descriptors_queue")
        from curator.warmup import warmer_register

        warmer_register(_networks_warm, roles={"web", "embed", "predict"})


def _networks_warm() -> None:
    """The face network's session and the pretrained gender network, opened and run once."""
    from embeddings import network, pretrained

    network.warm()
    if pretrained.available()[0]:
        pretrained.session()


def _faces_aligned(sender, *, dataset_ids, face_ids, **kwargs) -> None:
    from embeddings.services import descriptors_queue

    descriptors_queue(dataset_ids=dataset_ids, face_ids=face_ids)
