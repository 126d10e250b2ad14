"""gasmon device agent (runs on the Raspberry Pi; never imports the Lambda layer)."""
