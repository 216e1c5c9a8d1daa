"""What a send reports: every recipient's final status, the results file and progress lines."""
