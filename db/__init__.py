"""SQLAlchemy models and migrations for annotation results (the annotation pipeline, issue 3)."""
