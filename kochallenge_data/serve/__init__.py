"""The chatbot API over a fine-tuned model: ``serve`` (FastAPI, server-sent events).

Importing this package imports nothing heavy; fastapi, uvicorn, httpx, torch and transformers load
inside the functions that start a server or a backend (the ``serve`` and ``train`` extras).
"""
