"""The STTS Studio web app (Gradio): layout in ui.py, events in handlers.py, pictures and charts in render.py,
written files (converted uploads, masks video, download bundle) in media.py, models in models.py."""
