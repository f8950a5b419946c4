"""AWS CDK (v2) app describing the production deployment of the registration service."""
