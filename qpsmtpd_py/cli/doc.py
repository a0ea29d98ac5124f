"""`qpsmtpd-doc`: show a plugin's manual (its module docstring) or list plugins.

The docstring is read with `ast`. To list a plugin's declared arguments after
its manual the plugin module is imported (its register() never runs).
"""

import argparse
import ast
import os
import sys

from ..arguments import describe, usage
from ..plugin import PluginLoader, PluginLoadError, default_plugin_dirs


def plugin_doc(path):
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    return ast.get_docstring(tree) or "(no documentation)"


def arguments_text(loader, name):
    """The 'Arguments' section: what the plugin declares (qpsmtpd_py.arguments)."""
    try:
        cls = loader.load_class(name)
    except Exception as exc:        # a missing library, say: the manual still shows
        return [f"(arguments not shown: {exc})"]
    if cls.arguments is None:
        return ["(this plugin does not declare its arguments; see the manual above)"]
    return ["Declared arguments (config/plugins; anything else stops start-up):",
            "  " + usage(name, cls.arguments), ""] + describe(cls.arguments)


def all_plugins(dirs):
    """name -> path for every plugin file under the plugin dirs (first dir wins)."""
    found = {}
    for directory in dirs:
        for root, _subdirs, files in os.walk(directory):
            for filename in files:
                if not filename.endswith(".py") or filename.startswith("_"):
                    continue
                path = os.path.join(root, filename)
                name = os.path.relpath(path, directory)[:-3].replace(os.sep, "/")
                found.setdefault(name, path)
    return dict(sorted(found.items()))


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="qpsmtpd-doc",
        description="Show the manual of a qpsmtpd_py plugin (config files, arguments, hooks, "
                    "examples), or list every plugin with its one-line summary.")
    parser.add_argument("plugin", nargs="?", help="plugin name as written in config/plugins, "
                        "e.g. rcpt_ok or queue/maildir; omit to list all plugins")
    parser.add_argument("--plugin-dir", action="append", metavar="DIR",
                        help="search DIR instead of the built-in plugin directory (repeatable)")
    args = parser.parse_args(argv)
    dirs = args.plugin_dir or default_plugin_dirs()
    if args.plugin is None:
        for name, path in all_plugins(dirs).items():
            summary = plugin_doc(path).split("\n", 1)[0]
            print(f"{name:36} {summary.split(' - ', 1)[-1]}")
        return 0
    loader = PluginLoader(dirs)
    try:
        path = loader.find(args.plugin)
    except PluginLoadError as exc:
        path, error = None, str(exc)
    else:
        error = f"no plugin named {args.plugin} in {', '.join(dirs)}"
    if path is None:
        print(f"qpsmtpd-doc: {error}", file=sys.stderr)
        return 1
    print(plugin_doc(path))
    print()
    print("\n".join(arguments_text(loader, args.plugin)))
    return 0


def run():
    """Console entry point; a closed pipe (`qpsmtpd-doc | head`) is not an error."""
    try:
        return main()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(run())
