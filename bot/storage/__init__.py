"""PostgreSQL storage: schema, engine, embedded server and the queries the bot runs."""
