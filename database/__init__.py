"""movierec's database layer: engine/session factory, embedded server, schema, migrations, bulk COPY."""
