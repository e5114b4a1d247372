"""ASGI entry point for uvicorn (`app.asgi:app`)."""

from app.server import create_app

app = create_app()
