"""Parsed files that are read again only when they change on disk.

Plugins that read their own data files (list configs, member lists, maps) keep
one FileCache each; a file edited while the server runs is picked up at the next
lookup, without a HUP.
"""

import os


def file_signature(path):
    """What identifies one version of a file (raises OSError when it is missing)."""
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class FileCache:
    def __init__(self):
        self._files = {}      # path -> (signature, parsed content)

    def get(self, path, parse):
        """parse(text) of the file at `path`, cached until the file changes.
        Raises OSError when the file cannot be read."""
        signature = file_signature(path)
        cached = self._files.get(path)
        if cached and cached[0] == signature:
            return cached[1]
        with open(path, "rb") as fh:
            content = parse(fh.read().decode("utf-8", "surrogateescape"))
        self._files[path] = (signature, content)
        return content
