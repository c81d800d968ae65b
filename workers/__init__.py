"""Celery workers that detect and classify faces (the annotation pipeline, issue 3)."""
