"""The command-line tools: qpsmtpd-doc, qpsmtpd-store, qpsmtpd-tls-cert, karma_tool, berkeley_operation."""
