"""Development tools (DynamoDB Local launcher); production code never imports these."""
