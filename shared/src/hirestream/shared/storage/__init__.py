"""MongoDB wiring."""
