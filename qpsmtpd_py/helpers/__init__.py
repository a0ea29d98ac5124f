"""Libraries plugins build on (through qpsmtpd_py.api): address and IP lists, DNS,
the shared store, scanner clients, ...; the engine never imports a plugin."""
