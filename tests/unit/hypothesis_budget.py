"""The property suite's fixed budget and seed (printed in pytest's header by conftest)."""

from __future__ import annotations

import os

SEED = int(os.environ.get("TFMS_HYPOTHESIS_SEED", "20261201"))
EXAMPLES = int(os.environ.get("TFMS_HYPOTHESIS_EXAMPLES", "150"))
