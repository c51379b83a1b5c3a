"""Coarse-to-fine detection and lazy decoding on large photos, with real dlib on the fixture
faces: the cheap passes must not cost faces. A big face in an upscaled photo is settled by
the coarse pass; the small faces of a tiled group photo still take the upsampled pass and are
all found; medium faces cost only the pyramid levels that can hold faces like them; a large
JPEG is decoded at a reduced scale and its faces come out as from the full pixels. Faces are
asserted, not timings."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from curator.faces import pipeline
from curator.faces.detection import Detection, HogLayout, box_iou, detect_on_copy, detections_merge, hog_layout
from curator.faces.pipeline import AlignOptions, align_photo, detect_and_align, detection_passes, load_photo
from curator.images import load_rgb

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "faces"
LFW = sorted((FIXTURES / "lfw").glob("*/*.jpg"))
UTK = sorted((FIXTURES / "utkface").glob("*.jpg"))


def jpeg(rgb: np.ndarray, path: Path) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    return path


def upscaled(path: Path) -> np.ndarray:
    """An LFW photo blown up 8x onto a 3000x2000 photo with mirrored borders."""
    big = cv2.resize(load_rgb(path), (2000, 2000), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(cv2.copyMakeBorder(big, 0, 0, 500, 500, cv2.BORDER_CONSTANT, value=(90, 110, 120)))


def tiled(paths: list[Path], columns: int, rows: int) -> np.ndarray:
    """LFW photos tiled into one 3000x2000 photo: a face of ~165 px per tile at 8x6."""
    tile_w, tile_h = 3000 // columns, 2000 // rows
    tiles = [cv2.resize(load_rgb(p), (tile_w, tile_h), interpolation=cv2.INTER_CUBIC) for p in paths]
    return np.vstack([np.hstack(tiles[r * columns : (r + 1) * columns]) for r in range(rows)])


class PassLog:
    """Which detection passes ran (side, upsample), recorded around the real one."""

    def __init__(self, monkeypatch):
        self.passes = []
        real = pipeline._detect_pass

        def logged(photo, options, side, upsample, levels=0):
            found = real(photo, options, side, upsample, levels)
            self.passes.append((side, upsample, levels, len(found)))
            return found

        monkeypatch.setattr(pipeline, "_detect_pass", logged)


def test_passes_follow_the_datasets_detection_size_and_upsampling():
    default = AlignOptions()
    # (side, upsample, pyramid levels): each later pass scans only the levels finer than the
    # first of the pass before (2048 -> 1024 is four 6/5 steps; 1024 -> 512 four; 800 -> 512 three).
    assert detection_passes(3000, default) == [(512, 0, 0), (1024, 0, 4), (1024, 1, 4)]
    assert detection_passes(800, default) == [(512, 0, 0), (800, 0, 3), (800, 1, 4)]
    # Small photos (LFW, UTKFace crops) take the dataset's pass at once, as before.
    assert detection_passes(250, default) == [(250, 1, 0)]
    assert detection_passes(3000, AlignOptions(upsample=0)) == [(512, 0, 0), (1024, 0, 4)]
    assert detection_passes(3000, AlignOptions(detect_max_side=400, upsample=2)) == [(400, 0, 0), (400, 2, 8)]
    assert detection_passes(3000, AlignOptions(detector="cnn")) == [(1024, 1, 0)]


def test_big_face_of_an_upscaled_photo_is_settled_by_the_coarse_pass(monkeypatch, tmp_path):
    for path in LFW[:3]:
        small = detect_and_align(load_rgb(path), AlignOptions())
        assert len(small) == 1
        log = PassLog(monkeypatch)
        file = jpeg(upscaled(path), tmp_path / "big.jpg")
        faces = detect_and_align(load_photo(file, AlignOptions()), AlignOptions())
        # Settled by a pass without upsampling: the 2048-px upsampled pass never ran.
        assert log.passes[0][:2] == (512, 0) and (1024, 1) not in [p[:2] for p in log.passes]
        assert len(faces) == 1
        face = faces[0]
        # The same face as in the original photo, 8x (plus the 500-px border).
        expected = np.array(small[0].box) * 8 + (500, 0, 500, 0)
        assert np.allclose(face.box, expected, atol=small[0].size_px * 8 * 0.2)
        assert np.linalg.norm((face.landmarks - (500, 0)) / 8 - small[0].landmarks, axis=1).mean() < 2.5
        assert np.abs(face.crop.astype(int) - small[0].crop.astype(int)).mean() < 20


def test_small_faces_of_a_tiled_photo_take_the_full_pass_and_are_all_found(monkeypatch, tmp_path):
    paths = (LFW * 3)[:48]
    photo = tiled(paths, 8, 6)  # faces of ~165 px: ~56 px at 1024, under HOG's 73 without upsampling
    log = PassLog(monkeypatch)
    faces = detect_and_align(load_photo(jpeg(photo, tmp_path / "group.jpg"), AlignOptions()), AlignOptions())
    assert log.passes[-1][1] == 1  # the upsampled pass ran (the levels that can hold these faces)
    centres = {((f.box[1] + f.box[3]) // 2 // (2000 // 6), (f.box[0] + f.box[2]) // 2 // 375) for f in faces}
    assert len(centres) >= 44  # nearly every tile's face (a few turned ones escape HOG) ...
    monkeypatch.setattr(pipeline, "COARSE_SIDE", 10**6)  # ... as many as the full pass alone finds
    assert len(detect_and_align(photo, AlignOptions())) == len(faces)


def test_medium_faces_settle_at_the_detection_size_without_upsampling(monkeypatch):
    photo = tiled(LFW[:6], 3, 2)  # faces of ~400 px: ~135 px at 1024, ~68 at 512
    log = PassLog(monkeypatch)
    faces = detect_and_align(photo, AlignOptions())
    # The 512 pass finds faces near its limit; the next pass scans only its levels that can
    # hold faces down to 1/1.4 of theirs (a copy smaller than 1024 px), and that settles it.
    assert [p[1] for p in log.passes] == [0, 0] and log.passes[1][0] < 1024
    assert len(faces) == 6
    monkeypatch.setattr(pipeline, "COARSE_SIDE", 10**6)  # the full pass alone: the same faces
    full = detect_and_align(photo, AlignOptions())
    assert len(full) == 6 and all(max(box_iou(f.box, g.box) for g in full) > 0.5 for f in faces)


def test_a_later_pass_scans_only_the_levels_that_can_hold_faces_like_those_found():
    part = pipeline.pass_part_for_faces
    limit_at_512 = pipeline.HOG_SMALLEST_BOX * 3000 / 512  # the 512 pass's smallest box, in photo px
    # A face at the 512 pass's limit: faces down to 1/1.4 of it fit in the 1024 pass's three
    # coarsest levels (1024 / 1.2 = 853 px, then 711 and 593).
    assert part(3000, (1024, 0, 4), limit_at_512) == (853, 0, 3)
    assert part(3000, (1024, 0, 4), 1.2 * limit_at_512) == (711, 0, 2)
    assert part(3000, (1024, 0, 4), 1.4 * limit_at_512) == (593, 0, 1)
    assert part(3000, (1024, 0, 4), 1.5 * limit_at_512) is None  # settled
    # The upsampled pass: levels of 2048, 1707, 1422 and 1185 px, shrunk from its 1024-px copy.
    limit_at_1024 = pipeline.HOG_SMALLEST_BOX * 3000 / 1024
    assert part(3000, (1024, 1, 4), limit_at_1024) == (853, 1, 3)
    assert part(3000, (1024, 1, 4), 0.5 * limit_at_1024) == (1024, 1, 4)  # small faces: all of it


def test_reduced_decode_gives_the_faces_of_the_full_pixels(tmp_path):
    big = upscaled(LFW[4])
    file = jpeg(big, tmp_path / "big.jpg")
    photo = load_photo(file, AlignOptions())
    assert (photo.width, photo.height) == (3000, 2000)
    assert max(photo.coarsest[1].shape[:2]) == 1500  # JPEG decoded at 1/2 for a 1024-px detection
    lazy = align_photo(photo, AlignOptions()).faces
    full = detect_and_align(load_rgb(file), AlignOptions())
    assert len(lazy) == len(full) == 1
    assert lazy[0].box == full[0].box  # same detection copy, same boxes
    # Landmarks from the half-scale pixels agree with the full pixels' within 0.5 % of the face.
    error = np.linalg.norm(lazy[0].landmarks - full[0].landmarks, axis=1).mean()
    assert error < 0.005 * full[0].size_px
    assert np.abs(lazy[0].crop.astype(int) - full[0].crop.astype(int)).mean() < 3
    assert 1 not in photo._scales  # the full pixels were never decoded


def test_small_face_in_a_large_jpeg_is_fitted_on_the_full_pixels(tmp_path):
    canvas = np.full((2000, 3000, 3), 120, np.uint8)
    canvas[900:1150, 1300:1550] = load_rgb(LFW[5])  # a face of ~110 px in a 3000-px photo
    photo = load_photo(jpeg(canvas, tmp_path / "far.jpg"), AlignOptions())
    faces = align_photo(photo, AlignOptions()).faces
    assert len(faces) == 1 and 1 in photo._scales  # decoded again, in full, for this face
    near = detect_and_align(load_rgb(LFW[5]), AlignOptions())[0]
    assert np.linalg.norm(faces[0].landmarks - (1300, 900) - near.landmarks, axis=1).mean() < 2.5


def test_coarse_boxes_near_the_limit_do_not_settle(monkeypatch):
    """A pass settles only on faces well above the smallest box it can report."""
    photo = pipeline.Photo.from_array(np.zeros((2000, 3000, 3), np.uint8))
    calls = []

    def fake(photo, options, side, upsample, levels):
        calls.append((side, upsample))
        back = 3000 / side
        size = round(pipeline.HOG_SMALLEST_BOX * 1.2 * back)  # 1.2x the smallest box: near the limit
        return [Detection(100, 100, 100 + size, 100 + size, 1.0)] if (side, upsample) == (1024, 0) else []

    monkeypatch.setattr(pipeline, "_detect_pass", fake)
    found = pipeline.detect_faces(photo, AlignOptions())
    assert calls == [(512, 0), (1024, 0), (711, 1)]  # the upsampled pass's levels for such faces
    assert len(found) == 1  # the faces of every pass that ran


def test_a_face_found_by_an_earlier_pass_settles_a_later_one(monkeypatch):
    # Later passes scan only finer levels: a face the 512 pass found (near its limit, 175 px at
    # 1024) is not found again by the 1024 pass's coarser levels, yet it is well above the
    # upsampled pass's faces: settled without it.
    photo = pipeline.Photo.from_array(np.zeros((2000, 3000, 3), np.uint8))
    calls = []

    def fake(photo, options, side, upsample, levels):
        calls.append((side, upsample, levels))
        size = round(pipeline.HOG_SMALLEST_BOX * 1.2 * 3000 / 512)
        return [Detection(100, 100, 100 + size, 100 + size, 1.0)] if side == 512 else []

    monkeypatch.setattr(pipeline, "_detect_pass", fake)
    assert len(pipeline.detect_faces(photo, AlignOptions())) == 1
    assert calls == [(512, 0, 0), (711, 0, 2)]


@pytest.mark.parametrize("path", UTK[:6], ids=lambda p: p.name[:12])
def test_face_crops_keep_their_faces(path):
    assert len(detect_and_align(load_rgb(path), AlignOptions(whole_image_fallback=True))) == 1


def test_a_pass_limited_to_the_finest_levels_finds_small_faces_only():
    grey = cv2.cvtColor(tiled(LFW[:6], 3, 2), cv2.COLOR_RGB2GRAY)  # faces of ~400 px: ~135 px at 1024
    copy = cv2.resize(grey, (1024, 683), interpolation=cv2.INTER_AREA)
    everything = detect_on_copy(copy, 3000 / 1024, width=3000, height=2000, upsample=0)
    finest = detect_on_copy(copy, 3000 / 1024, width=3000, height=2000, upsample=0, levels=2)
    assert len(everything) == 6 and finest == []  # 135-px faces need the coarser levels
    small = cv2.resize(grey, (512, 341), interpolation=cv2.INTER_AREA)  # the same faces at ~67 px
    upsampled = detect_on_copy(small, 3000 / 512, width=3000, height=2000, upsample=1, levels=4)
    assert len(upsampled) == 6


def test_the_detectors_serialized_layout_is_checked_before_it_is_changed():
    layout = hog_layout()
    assert (round(layout.match_thresh, 2), round(layout.overlap_thresh, 2)) == (0.33, 0.79)
    assert len(layout.with_levels(4)) == len(layout.raw) - 1  # 1000 levels took two bytes, 4 take one
    with pytest.raises(RuntimeError, match="unexpected layout"):
        HogLayout.read(b"\x01\x03" + layout.raw[2:])
    with pytest.raises(ValueError):
        layout.with_levels(0)


def test_merged_passes_keep_one_box_per_face():
    a = Detection(100, 100, 200, 200, 1.0)
    inside = Detection(110, 110, 190, 190, 0.5)  # the same face at the next pyramid level
    apart = Detection(300, 100, 400, 200, 0.2)
    assert detections_merge([inside, apart], [a]) == [a, apart]
