"""Demo models built from code (nothing downloaded): `python -m demo_models.build --help`."""
