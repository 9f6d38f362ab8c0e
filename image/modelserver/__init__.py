"""tf-model-server: a TensorFlow SavedModel server (TF Serving REST + Open Inference Protocol)."""

import time

__version__ = "0.1.0"
SERVER_NAME = "tf-model-server"
PROCESS_STARTED = time.monotonic()
