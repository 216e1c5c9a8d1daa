"""Delivery receipts: QueryMessage polled until every message is final, in constant memory."""
