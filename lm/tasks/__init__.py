"""What a run trains the model to do: one module per task, one interface (`base.Task`)."""
