"""Federated fine-tuning on Flower: sites train where their data lives, the server aggregates."""
