"""Files only their owner may read or write, and one way to open the SQLite files the core keeps."""
