"""One module per experiment kind; each exposes `run(config, workdir)`."""
