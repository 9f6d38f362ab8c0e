"""Server unit tests: real TensorFlow, real uvicorn processes on 127.0.0.1, no cluster."""
