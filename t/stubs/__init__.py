"""Stand-in daemons and listeners for the TLS and AUTH tests (real sockets, real protocols)."""
