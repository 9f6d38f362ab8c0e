"""Operational glue for tf-model-server: tools, clusters, images, releases.

Every Make target and the e2e harness call these modules; nothing here is duplicated
in tests/.
"""
