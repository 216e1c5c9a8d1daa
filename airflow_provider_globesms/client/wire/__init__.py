"""The wire: signing, endpoints, HTTP/1.1 transport and framing, reading replies, the send state machine, retry
and rate limits."""
