"""Alembic environment: runs against the engine handed over in ``config.attributes``."""

from alembic import context

from curation.catalog import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # plain `alembic` invocation: URL from -x url=... or the ini
    from sqlalchemy import create_engine

    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    engine = create_engine(url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER TABLE support on SQLite
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
