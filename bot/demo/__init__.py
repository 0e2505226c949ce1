"""The bundled demo fleet and the `steward demo` walk-through."""
