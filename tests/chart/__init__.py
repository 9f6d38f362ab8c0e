"""Chart rendering tests: the real `bin/helm template` output, parsed and asserted."""
