"""The streaming shells around the model: Kafka clients and delivery, the labeler, the
Redis reservoir and lease, the updater, the versions topic and the metrics."""
