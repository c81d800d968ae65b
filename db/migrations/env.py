"""Alembic environment: migrations run on the engine the caller hands over."""

from alembic import context

from db.models import Base

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # SQLite alters a table by copying it and dropping the old one; with foreign keys on, that
        # DROP would cascade and delete every row that references the table (images, faces).
        # The pragma only takes effect outside a transaction, so it comes first.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
    if sqlite:
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        if broken:
            raise RuntimeError(f"the migration left rows that break foreign keys: {broken[:5]}")
