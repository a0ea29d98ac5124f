"""t_twoclasses - broken test plugin: a plugin file must define exactly one Plugin class."""

from qpsmtpd_py.plugin import Plugin


class One(Plugin):
    pass


class Two(Plugin):
    pass
