"""The ledger and its lease: what a task instance has submitted, locally or in object storage, and one sender at
a time."""
