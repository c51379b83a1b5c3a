from django.apps import AppConfig


class LabelingConfig(AppConfig):
    name = "labeling"
    verbose_name = "Labeling"

    def ready(self) -> None:
        # The embedding filters (similar_to, ids, selection; the distance and uniqueness sorts).
        from labeling.filters import register_face_filters
        from labeling.similarity import EMBEDDING_FILTERS

        register_face_filters(EMBEDDING_FILTERS)
