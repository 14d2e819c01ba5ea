"""Loaded at interpreter start-up when this folder is on PYTHONPATH: logs every name lookup and socket connect
to $REFED_SOCKET_LOG (one line each: 'resolve HOST' or 'connect HOST'), and lingers $REFED_SOCKET_LINGER seconds
at exit so that background threads (telemetry senders) get the time to try."""

import atexit
import os
import socket
import time

_LOG = os.environ.get("REFED_SOCKET_LOG")

if _LOG:

    def _note(kind, address):
        host = address[0] if isinstance(address, tuple) else address
        with open(_LOG, "a", encoding="utf-8") as fh:
            fh.write(f"{kind} {host}\n")

    _getaddrinfo = socket.getaddrinfo
    _connect = socket.socket.connect
    _connect_ex = socket.socket.connect_ex

    def getaddrinfo(host, *args, **kwargs):
        _note("resolve", host)
        return _getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        _note("connect", address)
        return _connect(self, address)

    def connect_ex(self, address):
        _note("connect", address)
        return _connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    atexit.register(time.sleep, float(os.environ.get("REFED_SOCKET_LINGER", "0")))
