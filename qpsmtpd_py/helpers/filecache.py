"""Parsed files that are parsed again only when they change on disk.

Two caches behind Plugin.parsed_file() and Plugin.parsed_config():
FileCache for any file (list configs, member lists, maps), stat'ed on each
lookup; ParsedLines for config files, whose change detection (mtime, size and
inode, rechecked once a second) is the config module's: it hands out the same
line list until the file changes. Either way a file edited while the server
runs is picked up at the next lookup, without a HUP, and an unchanged file is
never parsed twice in one process.
"""

import os


def file_signature(path):
    """What identifies one version of a file (raises OSError when it is missing)."""
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class FileCache:
    def __init__(self):
        self._files = {}      # path -> (signature, parser, parsed content)

    def get(self, path, parse):
        """parse(text) of the file at `path`, cached until the file changes (or
        another parser is asked for). Raises OSError when it cannot be read."""
        signature = file_signature(path)
        cached = self._files.get(path)
        if cached and cached[0] == signature and cached[1] == parse:
            return cached[2]
        with open(path, "rb") as fh:
            content = parse(fh.read().decode("utf-8", "surrogateescape"))
        self._files[path] = (signature, parse, content)
        return content


class ParsedLines:
    """parser(lines) per config name, run again only when the lines change.

    The config cache returns the very same list while a file is unchanged, so
    the usual check is one identity test. A new list (the file was re-read:
    it changed, or it uses $include, or a config hook answered) is compared
    line by line, origins included, before the parser runs again.
    """

    def __init__(self):
        self._parsed = {}     # name -> (lines, parser, result)

    def get(self, name, lines, parser):
        cached = self._parsed.get(name)
        if cached and cached[1] == parser and _same_lines(cached[0], lines):
            if cached[0] is not lines:
                self._parsed[name] = (lines, parser, cached[2])
            return cached[2]
        result = parser(lines)
        self._parsed[name] = (lines, parser, result)
        return result


def _same_lines(old, new):
    if old is new:
        return True
    return len(old) == len(new) and all(
        a == b and getattr(a, "origin", None) == getattr(b, "origin", None)
        for a, b in zip(old, new))
