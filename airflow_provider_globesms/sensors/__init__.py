"""sensors of the Alibaba Cloud SMS (international) provider."""
