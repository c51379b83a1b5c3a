"""One read of each dataset's descriptor stamp per page view (embeddings.selectors.descriptor_stamp)."""

from embeddings.selectors import descriptor_stamps_read_once


class DescriptorStampPerRequest:
    """A GET sees one snapshot of the descriptors' stamp, so the several reads of a page ("more
    like this": the filter, its count, the ranking, the panel) share one count of the dataset's
    faces. Other methods read it fresh each time: a POST may add or remove faces before it answers."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        with descriptor_stamps_read_once():
            return self.get_response(request)
