"""One module per user task; each takes a config dataclass and returns a result dataclass."""
