"""The message rules: numbers, fields, segments, the API's request and result models, and recipient rows."""
