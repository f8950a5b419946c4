"""Development tools (DynamoDB Local launcher, a simulated network round trip).

Production code never imports these, except the simulated round trip when a
benchmark switches it on (``DYNAMODB_SIMULATED_LATENCY_MS`` above 0)."""
