from django.apps import AppConfig


class CuratorConfig(AppConfig):
    name = "curator"
    verbose_name = "Datasets"

    def ready(self) -> None:
        from curator.warmup import warmer_register

        # The face path (detection, landmarks, dlib's chips) runs in imports, predictions and the web.
        warmer_register(_face_path_warm, roles={"web", "align", "predict", "embed"})


def _face_path_warm() -> None:
    """Read dlib's detectors and landmark predictors (the 68-point model alone takes about a second)."""
    from curator.faces.chips import five_point_predictor
    from curator.faces.detection import cnn_detector, hog_detector
    from curator.faces.landmarks import shape_predictor

    hog_detector()
    cnn_detector()
    shape_predictor()
    five_point_predictor()
