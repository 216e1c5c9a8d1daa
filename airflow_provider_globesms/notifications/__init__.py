"""notifications of the Alibaba Cloud SMS (international) provider."""
