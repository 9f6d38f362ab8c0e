"""The two HTTP APIs: TF Serving REST and the Open Inference Protocol (V2)."""
