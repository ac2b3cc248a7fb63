"""`tuneproof ui`: a local browser workbench over the same functions the CLI calls.

Server-rendered pages (Jinja2) on the project's FastAPI stack, a little JavaScript, every asset served
by the app. Nothing here trains: runs are `tuneproof run` processes started in their own session,
so the browser and the UI process can go away without stopping them.
"""
