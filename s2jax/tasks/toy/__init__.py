"""The toy world's tasks and prompt wordings (the shipped toy model's domain); the demo and the
pretraining recipe that use them live in `s2jax.toy`."""
