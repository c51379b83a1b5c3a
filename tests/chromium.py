"""Chromium for the browser tests and the serve benchmark: where it is, how it is launched here,
and a fake-camera clip of a face. No Django imports, so bench scripts can use it as they start."""

import io
import os
from pathlib import Path

from PIL import Image

CHROMIUM = os.environ.get("CURATOR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FIXTURE_FACES = Path(__file__).resolve().parent / "fixtures" / "faces"


def fake_camera_args(clip: str | Path) -> list[str]:
    """Chromium flags that grant the camera and play `clip` as its video."""
    return [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}",
    ]


def face_clip(path: str | Path, frames: int = 30) -> None:
    """An MJPEG clip (what Chromium's fake camera plays) of a face drifting across a 640x480 frame."""
    with Image.open(sorted((FIXTURE_FACES / "lfw" / "female").glob("*.jpg"))[0]) as face:
        face = face.convert("RGB").resize((300, 300))
    with open(path, "wb") as out:
        for i in range(frames):
            frame = Image.new("RGB", (640, 480), (120, 120, 118))
            frame.paste(face, (120 + 4 * i, 90))
            buffer = io.BytesIO()
            frame.save(buffer, "JPEG", quality=85)
            out.write(buffer.getvalue())
