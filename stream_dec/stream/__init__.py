"""Streaming shells around the model: the Kafka labeler (and, later, reservoir and updater)."""
