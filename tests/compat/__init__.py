"""Compatibility suite: the server driven by software no one here wrote (see README "Compatibility")."""
