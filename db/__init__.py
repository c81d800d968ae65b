"""SQLAlchemy models, migrations, result writing and reading for annotation results."""
