"""``isic serve``: the HTTP JSON scoring API (FastAPI on uvicorn) over a bundle."""
