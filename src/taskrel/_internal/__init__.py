"""Private helpers shared across taskrel's layers (validation, devices, I/O, ...)."""
