"""`greenq gateway`: the HTTP API for storefronts in any language (FastAPI + uvicorn)."""
