"""qpsmtpd_py: a plugin-driven SMTP daemon, drop-in compatible with qpsmtpd."""

__version__ = "0.1.0"
