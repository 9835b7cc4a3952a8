"""The trio part of the server: sockets, sessions, dispatch, fan-out."""
