"""The control plane's HTTP API (FastAPI): thin endpoints over seawall.control.

``app.create_app(plane)`` builds the application; ``serve.serve`` runs it
with uvicorn (TLS when given a certificate). See docs/control.md.
"""
