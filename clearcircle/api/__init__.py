"""The HTTP face: FastAPI routes over the pipeline and store, with API keys and roles."""
