"""The subcommands of ``skin-cancer``, one module per kind of work; each has ``register(sub)``."""
