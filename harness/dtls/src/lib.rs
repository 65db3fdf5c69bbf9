//! Sans-IO DTLS 1.2 engine (RFC 6347) for the cipher suites OpenThread's CoAPS uses.
