"""Writing files that must survive a crash (queue plugins): a directory's fsync,
so a new name in it is on disk before we answer 250, and the quiet unlink that
cleans up after a failed write without hiding the write's own error."""

import os


def fsync_dir(path):
    """Flush directory `path` itself (the names in it) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path):
    """Remove `path` if it is there; any error is ignored (this is clean-up)."""
    try:
        os.unlink(path)
    except OSError:
        pass
