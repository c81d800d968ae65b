"""SQLAlchemy models, migrations, and the writes and reads of annotation results."""
