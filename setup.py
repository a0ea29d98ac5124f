"""The one thing pyproject.toml cannot say: the plugins/ tree (sub-directories that
are not packages) is installed as data inside the package, qpsmtpd_py/_plugins, so an
installed server finds its plugins without a checkout. Everything else: pyproject.toml."""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildWithPlugins(build_py):
    """Copy plugins/ into the built package as qpsmtpd_py/_plugins."""

    def run(self):
        super().run()
        source = os.path.join(HERE, "plugins")
        target = os.path.join(self.build_lib, "qpsmtpd_py", "_plugins")
        for root, _dirs, files in os.walk(source):
            for name in files:
                if name.endswith((".pyc",)) or "__pycache__" in root:
                    continue
                src = os.path.join(root, name)
                dst = os.path.join(target, os.path.relpath(src, source))
                self.mkpath(os.path.dirname(dst))
                self.copy_file(src, dst)


setup(cmdclass={"build_py": BuildWithPlugins})
