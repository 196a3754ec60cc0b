"""Built-in adapters, one module per picker/format; each is declared in ``registry.toml``."""
