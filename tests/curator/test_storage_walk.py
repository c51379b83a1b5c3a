"""storage_walk lists every file under a storage prefix, and storage_listdir one level of it,
through the storage API only, on this test's own MEDIA_ROOT (the file system storage) and on a
real S3-compatible server, where a missing prefix is no error but an empty listing."""

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from curator.storage import storage_listdir, storage_walk

NESTED = ["top/a.jpg", "top/b.jpg", "top/inner/c.jpg", "top/inner/deeper/d.jpg", "top/other/e.jpg"]


def store_all(names: list[str]) -> None:
    for name in names:
        assert default_storage.save(name, ContentFile(b"x")) == name


def test_every_file_at_any_depth_folder_files_first_then_subfolders_in_order():
    store_all(["elsewhere/z.jpg", *reversed(NESTED)])
    assert list(storage_walk("top")) == NESTED
    assert list(storage_walk("top/inner")) == ["top/inner/c.jpg", "top/inner/deeper/d.jpg"]


def test_a_missing_or_empty_prefix_yields_nothing(media_root):
    assert list(storage_walk("datasets")) == []
    (media_root / "empty" / "inside").mkdir(parents=True)
    assert list(storage_walk("empty")) == []
    assert list(storage_walk("empty", with_folders=True)) == ["empty/inside/", "empty/"]


def test_with_folders_each_folder_comes_after_everything_in_it():
    store_all(NESTED)
    names = list(storage_walk("top", with_folders=True))
    assert [n for n in names if not n.endswith("/")] == NESTED
    assert names.index("top/inner/deeper/") > names.index("top/inner/deeper/d.jpg")
    assert names.index("top/inner/") > names.index("top/inner/deeper/")
    assert names[-1] == "top/"


def test_listdir_gives_one_level_and_nothing_for_a_missing_prefix_or_a_file():
    assert storage_listdir("top") == ([], [])
    store_all(NESTED)
    folders, files = storage_listdir("top")
    assert (sorted(folders), sorted(files)) == (["inner", "other"], ["a.jpg", "b.jpg"])
    assert storage_listdir("top/a.jpg") == ([], [])


def test_on_an_object_store_too(s3_storage):
    assert list(storage_walk("top")) == []
    assert storage_listdir("top") == ([], [])
    store_all(NESTED)
    assert list(storage_walk("top")) == NESTED
    assert sorted(storage_listdir("top")[0]) == ["inner", "other"]
