"""The FastAPI model server over the published recommendation lists (not built yet)."""
