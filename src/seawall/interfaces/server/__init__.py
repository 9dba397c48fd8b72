"""The append-only repository server (``seawall repo-server``): a local
directory served over HTTP(S) with the Storage protocol's calls as endpoints.

:mod:`.app` is the HTTP application and documents the wire protocol;
:mod:`.serve` binds a socket, sets up TLS and runs it under uvicorn. The
client is :class:`seawall.storage.rest.RestStorage`.
"""
