"""The Kafka edge: the source consumer, dead letters, the Schema Registry (the only
confluent_kafka users)."""
