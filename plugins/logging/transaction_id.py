"""logging/transaction_id - write log lines to standard error, like logging/warn, but
starting with the id of the mail transaction they belong to: the connection's id
(see logging/connection_id) and the number of the transaction in the session,
`ID.1`, `ID.2` ... (RSET and each message start a new one), so one message's lines
can be found; lines outside a transaction show `ID.0`.

Arguments: [LEVEL] or loglevel LEVEL  (0-7 or LOGINFO ...; default config/loglevel)
Hooks: logging.  Example config/logging line:  logging/transaction_id LOGINFO

Differences from qpsmtpd: works (qpsmtpd's stopped start-up with "The transaction ID
feature is currently unsupported").
"""

from qpsmtpd_py.api import isa_plugin, session_id


class TransactionId(isa_plugin("logging/connection_id")):
    def ident(self, transaction):
        session = getattr(self.app, "session", None)
        connection = session.connection if session is not None else None
        base = session_id(connection)
        if transaction is None or connection is None or transaction.sender is None:
            return f"{base}.0"
        number = transaction.notes.get("transaction_id")
        if number is None:
            number = connection.notes.get("transaction_id_count", 0) + 1
            connection.notes["transaction_id_count"] = number
            transaction.notes["transaction_id"] = number
        return f"{base}.{number}"
