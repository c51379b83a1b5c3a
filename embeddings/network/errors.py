class FaceNetworkError(RuntimeError):
    """The face network cannot be used: its file is missing, truncated, or not the network we know."""
