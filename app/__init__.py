"""The STTS Studio web app (Gradio): layout in ui.py, events in handlers.py, pictures in render.py."""
