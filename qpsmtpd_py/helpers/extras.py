"""Optional Python libraries that single plugins need (pyproject.toml extras).

A plugin imports its library with `require("dkim", "dkimpy", "dkim")` at the top
of its file, so a missing library stops start-up with the command that installs
it, instead of failing at the first message:

    plugins/dkim.py: ImportError: the dkim plugin needs the Python package dkimpy:
    pip install 'qpsmtpd_py[dkim]' (Debian: apt-get install python3-dkim)
"""

import importlib


def require(module, package, extra, debian=None, plugin=None):
    """Import and return `module`; ImportError naming `package` and the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        who = f"the {plugin} plugin" if plugin else "this plugin"
        hint = f" (Debian: apt-get install {debian})" if debian else ""
        raise ImportError(f"{who} needs the Python package {package}: "
                          f"pip install 'qpsmtpd_py[{extra}]'{hint} ({exc})") from None
