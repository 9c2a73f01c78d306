"""The distillation domain: label-free filters (vote), generations -> System 1 SFT set
(dataset), and accuracy / tokens per answer of one system (evaluate)."""
