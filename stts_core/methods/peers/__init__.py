"""Peer token-reduction methods, one module each, registered on import (docs/methods.md)."""
