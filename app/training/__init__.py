"""Short training runs over HTTP: create, follow (JSON or server-sent events), cancel."""
