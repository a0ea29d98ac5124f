"""The accept loop of the threaded stand-in servers (scanner daemons, the milter):
each connection is handled in a daemon thread of its own until the listener is
closed."""

import threading


def serve_in_threads(listener, handle, conns=None):
    """Accept on `listener` in a daemon thread (started here, and returned); each
    connection is appended to the list `conns` (when given), then `handle(conn)`
    runs in a thread of its own. Closing the listener ends the loop."""
    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            if conns is not None:
                conns.append(conn)
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return thread
