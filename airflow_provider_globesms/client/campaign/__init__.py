"""Campaign controls: quiet hours in each recipient's time, opt-out (suppression) lists and the budget."""
