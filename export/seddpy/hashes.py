"""SHA-256 digests of the files an export writes (the manifest records them, the SDK checks them)."""
import hashlib


def file_sha256(path):
    """Lower-case hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
