"""Long-running checks: the soak (`make soak`) and the memory bound in a container (`make soak-memory`)."""
