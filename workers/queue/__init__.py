"""The Celery side: the app, its tasks, sending chunks to the broker and taking them back, schedules, and what the
broker says about workers."""
